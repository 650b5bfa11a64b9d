//! Resiliency as pure logic: circuit breakers, their `trip` condition, and retry backoff.
//!
//! Semantics follow Dapr's (`pkg/resiliency`, gobreaker v0.5.0) except where daprd is
//! defective: a `trip` condition naming an unknown variable is a load error here (daprd
//! loads it and never trips), and retries stop at the request's deadline (daprd waits up to
//! 15 minutes). Time is passed in, so every transition is testable without sleeping; the
//! gateway's store handle does the waiting.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The counters a `trip` condition can read (Dapr's five CEL variables).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls admitted in the current state (or interval).
    pub requests: i64,
    /// Successes in the current state (or interval).
    pub total_successes: i64,
    /// Failures in the current state (or interval).
    pub total_failures: i64,
    /// Successes since the last failure.
    pub consecutive_successes: i64,
    /// Failures since the last success.
    pub consecutive_failures: i64,
}

/// A parsed `trip` condition: the subset of CEL that Dapr's documents use (integer
/// arithmetic, comparisons, `&&`, `||`, `!`, parentheses, `?:` excluded) over the five
/// counters. Anything else fails to parse, so a typo never means "never trips".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TripCondition {
    source: String,
    expr: BoolExpr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BoolExpr {
    Or(Box<BoolExpr>, Box<BoolExpr>),
    And(Box<BoolExpr>, Box<BoolExpr>),
    Not(Box<BoolExpr>),
    Cmp(IntExpr, CmpOp, IntExpr),
    Lit(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IntExpr {
    Num(i64),
    Var(Var),
    Bin(Box<IntExpr>, char, Box<IntExpr>),
    Neg(Box<IntExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Requests,
    TotalSuccesses,
    TotalFailures,
    ConsecutiveSuccesses,
    ConsecutiveFailures,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Num(i64),
    Ident(String),
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    const OPS: [&str; 16] = [
        "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "+", "-", "*", "/", "%",
    ];
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    'outer: while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = s[start..i]
                .parse()
                .map_err(|_| format!("number {} is too large", &s[start..i]))?;
            out.push(Tok::Num(n));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].to_owned()));
            continue;
        }
        for op in OPS {
            if s[i..].starts_with(op) {
                out.push(Tok::Op(op));
                i += op.len();
                continue 'outer;
            }
        }
        return Err(format!("unexpected character '{c}' at offset {i}"));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Op(o)) if *o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = self.peek_op(op);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn or(&mut self) -> Result<BoolExpr, String> {
        let mut l = self.and()?;
        while self.eat_op("||") {
            l = BoolExpr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<BoolExpr, String> {
        let mut l = self.unary()?;
        while self.eat_op("&&") {
            l = BoolExpr::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<BoolExpr, String> {
        if self.eat_op("!") {
            return Ok(BoolExpr::Not(Box::new(self.unary()?)));
        }
        // A parenthesis opens a boolean group when what it holds is one; otherwise it is
        // arithmetic and the comparison follows.
        if self.peek_op("(") {
            let save = self.pos;
            self.pos += 1;
            if let Ok(inner) = self.or()
                && self.eat_op(")")
            {
                return Ok(inner);
            }
            self.pos = save;
        }
        match self.toks.get(self.pos) {
            Some(Tok::Ident(w)) if w == "true" || w == "false" => {
                self.pos += 1;
                return Ok(BoolExpr::Lit(w == "true"));
            }
            _ => {}
        }
        let l = self.sum()?;
        let op = match self.toks.get(self.pos) {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Err("expected a comparison (==, !=, <, <=, >, >=)".into()),
        };
        self.pos += 1;
        Ok(BoolExpr::Cmp(l, op, self.sum()?))
    }

    fn sum(&mut self) -> Result<IntExpr, String> {
        let mut l = self.product()?;
        loop {
            let op = if self.eat_op("+") {
                '+'
            } else if self.eat_op("-") {
                '-'
            } else {
                return Ok(l);
            };
            l = IntExpr::Bin(Box::new(l), op, Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<IntExpr, String> {
        let mut l = self.atom()?;
        loop {
            let op = if self.eat_op("*") {
                '*'
            } else if self.eat_op("/") {
                '/'
            } else if self.eat_op("%") {
                '%'
            } else {
                return Ok(l);
            };
            l = IntExpr::Bin(Box::new(l), op, Box::new(self.atom()?));
        }
    }

    fn atom(&mut self) -> Result<IntExpr, String> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Num(n)) => Ok(IntExpr::Num(n)),
            Some(Tok::Op("-")) => Ok(IntExpr::Neg(Box::new(self.atom()?))),
            Some(Tok::Op("(")) => {
                let e = self.sum()?;
                if self.eat_op(")") {
                    Ok(e)
                } else {
                    Err("missing ')'".into())
                }
            }
            Some(Tok::Ident(w)) => Ok(IntExpr::Var(match w.as_str() {
                "requests" => Var::Requests,
                "totalSuccesses" => Var::TotalSuccesses,
                "totalFailures" => Var::TotalFailures,
                "consecutiveSuccesses" => Var::ConsecutiveSuccesses,
                "consecutiveFailures" => Var::ConsecutiveFailures,
                other => {
                    return Err(format!(
                        "unknown variable '{other}' (known: requests, totalSuccesses, \
                         totalFailures, consecutiveSuccesses, consecutiveFailures)"
                    ));
                }
            })),
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

impl TripCondition {
    /// Parses a `trip` expression such as `consecutiveFailures >= 5`.
    pub fn parse(source: &str) -> Result<TripCondition, String> {
        let mut p = Parser {
            toks: tokenize(source)?,
            pos: 0,
        };
        let expr = p.or()?;
        if p.pos != p.toks.len() {
            return Err(format!("unexpected {:?}", p.toks[p.pos]));
        }
        Ok(TripCondition {
            source: source.to_owned(),
            expr,
        })
    }

    /// Whether the breaker should open with these counts. Arithmetic errors (division by
    /// zero, overflow) evaluate to "don't trip", as in Dapr.
    pub fn eval(&self, c: &Counts) -> bool {
        eval_bool(&self.expr, c).unwrap_or(false)
    }
}

impl fmt::Display for TripCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn eval_bool(e: &BoolExpr, c: &Counts) -> Option<bool> {
    Some(match e {
        BoolExpr::Or(a, b) => eval_bool(a, c)? || eval_bool(b, c)?,
        BoolExpr::And(a, b) => eval_bool(a, c)? && eval_bool(b, c)?,
        BoolExpr::Not(a) => !eval_bool(a, c)?,
        BoolExpr::Lit(b) => *b,
        BoolExpr::Cmp(a, op, b) => {
            let (a, b) = (eval_int(a, c)?, eval_int(b, c)?);
            match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                CmpOp::Lt => a < b,
                CmpOp::Le => a <= b,
                CmpOp::Gt => a > b,
                CmpOp::Ge => a >= b,
            }
        }
    })
}

fn eval_int(e: &IntExpr, c: &Counts) -> Option<i64> {
    match e {
        IntExpr::Num(n) => Some(*n),
        IntExpr::Neg(a) => eval_int(a, c)?.checked_neg(),
        IntExpr::Var(v) => Some(match v {
            Var::Requests => c.requests,
            Var::TotalSuccesses => c.total_successes,
            Var::TotalFailures => c.total_failures,
            Var::ConsecutiveSuccesses => c.consecutive_successes,
            Var::ConsecutiveFailures => c.consecutive_failures,
        }),
        IntExpr::Bin(a, op, b) => {
            let (a, b) = (eval_int(a, c)?, eval_int(b, c)?);
            match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                '*' => a.checked_mul(b),
                '/' => a.checked_div(b),
                _ => a.checked_rem(b),
            }
        }
    }
}

/// A circuit breaker's configuration (Dapr's `circuitBreakers.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// The policy's name.
    pub name: String,
    /// Calls admitted while half-open, and successes needed there to close.
    pub max_requests: u32,
    /// Period after which counts are cleared while closed; zero = never.
    pub interval: Duration,
    /// Time open before half-open.
    pub timeout: Duration,
    /// When to open.
    pub trip: TripCondition,
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls fail at once without reaching the store.
    Open,
    /// A few probe calls pass; their outcome closes or re-opens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// Dapr's name of the state (metric label values).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Why a breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The breaker is open.
    Open,
    /// The breaker is half-open and all its probes are in flight.
    TooManyProbes,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::Open => "circuit breaker is open",
            Rejection::TooManyProbes => "circuit breaker is half-open and its probes are in flight",
        })
    }
}

/// Proof that a call was admitted, to hand back with its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    counts: Counts,
    generation: u64,
    /// Closed: when counts clear (if `interval` > 0). Open: when half-open begins.
    expiry: Option<Instant>,
}

/// One store's circuit breaker, shared by every shard and app.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, now: Instant) -> Breaker {
        let expiry = (!settings.interval.is_zero()).then(|| now + settings.interval);
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                counts: Counts::default(),
                generation: 0,
                expiry,
            }),
        }
    }

    /// The configuration.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn advance(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            BreakerState::Closed => {
                if let Some(at) = inner.expiry
                    && now >= at
                {
                    inner.counts = Counts::default();
                    inner.generation += 1;
                    inner.expiry = Some(now + self.settings.interval);
                }
            }
            BreakerState::Open => {
                if inner.expiry.is_some_and(|at| now >= at) {
                    self.set_state(inner, BreakerState::HalfOpen, now);
                }
            }
            BreakerState::HalfOpen => {}
        }
    }

    fn set_state(&self, inner: &mut Inner, state: BreakerState, now: Instant) {
        inner.state = state;
        inner.counts = Counts::default();
        inner.generation += 1;
        inner.expiry = match state {
            BreakerState::Closed => {
                (!self.settings.interval.is_zero()).then(|| now + self.settings.interval)
            }
            BreakerState::Open => Some(now + self.settings.timeout),
            BreakerState::HalfOpen => None,
        };
    }

    /// The current state (an expired open state reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let mut inner = self.inner.lock();
        self.advance(&mut inner, now);
        inner.state
    }

    /// Admits a call or refuses it at once.
    pub fn admit(&self, now: Instant) -> Result<Ticket, Rejection> {
        let mut inner = self.inner.lock();
        self.advance(&mut inner, now);
        match inner.state {
            BreakerState::Open => return Err(Rejection::Open),
            BreakerState::HalfOpen
                if inner.counts.requests >= i64::from(self.settings.max_requests) =>
            {
                return Err(Rejection::TooManyProbes);
            }
            _ => {}
        }
        inner.counts.requests += 1;
        Ok(Ticket {
            generation: inner.generation,
        })
    }

    /// Records an admitted call's outcome; returns the new state if it changed. An outcome
    /// from before the last state change is ignored.
    pub fn record(&self, ticket: Ticket, success: bool, now: Instant) -> Option<BreakerState> {
        let mut inner = self.inner.lock();
        self.advance(&mut inner, now);
        if ticket.generation != inner.generation {
            return None;
        }
        let before = inner.state;
        let c = &mut inner.counts;
        if success {
            c.total_successes += 1;
            c.consecutive_successes += 1;
            c.consecutive_failures = 0;
            if before == BreakerState::HalfOpen
                && c.consecutive_successes >= i64::from(self.settings.max_requests)
            {
                self.set_state(&mut inner, BreakerState::Closed, now);
            }
        } else {
            c.total_failures += 1;
            c.consecutive_failures += 1;
            c.consecutive_successes = 0;
            let trip = match before {
                BreakerState::Closed => self.settings.trip.eval(c),
                _ => true,
            };
            if trip {
                self.set_state(&mut inner, BreakerState::Open, now);
            }
        }
        (inner.state != before).then_some(inner.state)
    }
}

/// A retry policy (Dapr's `retries.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The policy's name.
    pub name: String,
    /// How waits grow.
    pub backoff: Backoff,
    /// Retries after the first attempt; `None` = unlimited (bounded by the deadline).
    pub max_retries: Option<u32>,
}

/// How the wait between attempts is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The same wait every time, no jitter (Dapr's `constant`).
    Constant(Duration),
    /// Dapr's `exponential`: interval 500 ms ×1.5 per retry, capped at `max_interval`, each
    /// wait drawn uniformly from ±50 % of the interval.
    Exponential {
        /// Cap of the interval.
        max_interval: Duration,
    },
}

/// Initial interval of Dapr's exponential backoff.
pub const EXPONENTIAL_INITIAL: Duration = Duration::from_millis(500);

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based), with `unit` ∈ [0, 1) as the random
    /// draw; `None` when the policy allows no more retries.
    pub fn wait(&self, retry: u32, unit: f64) -> Option<Duration> {
        if self.max_retries.is_some_and(|m| retry > m) {
            return None;
        }
        Some(match self.backoff {
            Backoff::Constant(d) => d,
            Backoff::Exponential { max_interval } => {
                let mut c = EXPONENTIAL_INITIAL.as_secs_f64();
                let cap = max_interval.as_secs_f64();
                for _ in 1..retry {
                    c = if c >= cap / 1.5 { cap } else { c * 1.5 };
                }
                Duration::from_secs_f64(c * (0.5 + unit.clamp(0.0, 1.0)))
            }
        })
    }
}

/// A store's resiliency at run time: its breaker (shared by every shard and app), its
/// retry policy and its per-attempt timeout.
#[derive(Debug, Default)]
pub struct Resilience {
    /// The store's name (metric labels and logs).
    pub store: String,
    /// The breaker, if one is configured.
    pub breaker: Option<Breaker>,
    /// The retry policy, if one is configured.
    pub retry: Option<RetryPolicy>,
    /// The per-attempt timeout, if one is configured (the request timeout bounds the whole).
    pub attempt_timeout: Option<Duration>,
    /// daprd's labels of this store's resiliency series.
    pub target: crate::metrics::ResiliencyTarget,
    lookups: crate::metrics::Lookups,
}

impl Resilience {
    /// Builds the run-time state from configured policies; a breaker's gauge shows it
    /// closed from now on.
    pub fn new(
        target: crate::metrics::ResiliencyTarget,
        breaker: Option<BreakerSettings>,
        retry: Option<RetryPolicy>,
        attempt_timeout: Option<Duration>,
    ) -> Resilience {
        if breaker.is_some() {
            target.breaker_started();
        }
        Resilience {
            store: target.store.clone(),
            lookups: target.lookups(
                attempt_timeout.is_some(),
                retry.is_some(),
                breaker.is_some(),
            ),
            breaker: breaker.map(|b| Breaker::new(b, Instant::now())),
            retry,
            attempt_timeout,
            target,
        }
    }

    /// Counts one store call's look-up of each policy the store has (daprd's
    /// `dapr_resiliency_count`).
    pub fn looked_up(&self) {
        self.lookups.record(self.breaker_state());
    }

    /// The breaker's state now, if there is a breaker.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(|b| b.state(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trip: &str, max_requests: u32) -> BreakerSettings {
        BreakerSettings {
            name: "cb".into(),
            max_requests,
            interval: Duration::ZERO,
            timeout: Duration::from_secs(10),
            trip: TripCondition::parse(trip).unwrap(),
        }
    }

    #[test]
    fn trip_conditions_parse_and_evaluate() {
        let c = Counts {
            requests: 10,
            total_failures: 6,
            consecutive_failures: 5,
            ..Counts::default()
        };
        for (src, want) in [
            ("consecutiveFailures >= 5", true),
            ("consecutiveFailures > 5", false),
            ("requests > 8 && totalFailures * 100 / requests >= 50", true),
            ("!(consecutiveFailures < 5) || false", true),
            ("(consecutiveFailures + 1) % 2 == 0", true),
            ("totalFailures / totalSuccesses > 1", false), // division by zero: don't trip
        ] {
            assert_eq!(TripCondition::parse(src).unwrap().eval(&c), want, "{src}");
        }
        for bad in [
            "consecutiveFailure >= 5",
            "consecutiveFailures >=",
            "consecutiveFailures",
            "a ? b : c",
            "consecutiveFailures >= 5)",
        ] {
            assert!(TripCondition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn breaker_opens_probes_and_closes() {
        let t0 = Instant::now();
        let b = Breaker::new(settings("consecutiveFailures >= 3", 2), t0);
        for i in 0..3 {
            let t = b.admit(t0).unwrap();
            let changed = b.record(t, false, t0);
            assert_eq!(changed.is_some(), i == 2);
        }
        assert_eq!(b.admit(t0).unwrap_err(), Rejection::Open);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        let p1 = b.admit(t1).unwrap();
        let p2 = b.admit(t1).unwrap();
        assert_eq!(b.admit(t1).unwrap_err(), Rejection::TooManyProbes);
        assert_eq!(b.record(p1, true, t1), None);
        assert_eq!(b.record(p2, true, t1), Some(BreakerState::Closed));
        // A failed probe re-opens it for another timeout.
        for _ in 0..3 {
            let t = b.admit(t1).unwrap();
            b.record(t, false, t1);
        }
        let t2 = t1 + Duration::from_secs(10);
        let p = b.admit(t2).unwrap();
        assert_eq!(b.record(p, false, t2), Some(BreakerState::Open));
        assert_eq!(b.state(t2 + Duration::from_secs(9)), BreakerState::Open);
    }

    #[test]
    fn stale_outcomes_and_interval_reset() {
        let t0 = Instant::now();
        let mut s = settings("consecutiveFailures >= 2", 1);
        s.interval = Duration::from_secs(1);
        let b = Breaker::new(s, t0);
        let old = b.admit(t0).unwrap();
        b.record(b.admit(t0).unwrap(), false, t0);
        // The interval passed: counts cleared, the old outcome is ignored.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(b.record(old, false, t1), None);
        b.record(b.admit(t1).unwrap(), false, t1);
        assert_eq!(b.state(t1), BreakerState::Closed);
        b.record(b.admit(t1).unwrap(), false, t1);
        assert_eq!(b.state(t1), BreakerState::Open);
    }

    #[test]
    fn backoff_waits() {
        let exp = RetryPolicy {
            name: "r".into(),
            backoff: Backoff::Exponential {
                max_interval: Duration::from_secs(1),
            },
            max_retries: Some(4),
        };
        assert_eq!(exp.wait(1, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(exp.wait(1, 1.0), Some(Duration::from_millis(750)));
        assert_eq!(exp.wait(2, 0.5), Some(Duration::from_millis(750)));
        // 1125 ms would pass the cap: the interval becomes 1 s.
        assert_eq!(exp.wait(3, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(exp.wait(5, 0.5), None);
        let c = RetryPolicy {
            name: "c".into(),
            backoff: Backoff::Constant(Duration::from_millis(100)),
            max_retries: None,
        };
        assert_eq!(c.wait(1000, 0.9), Some(Duration::from_millis(100)));
    }
}
