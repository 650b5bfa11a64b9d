//! Evaluation of a parsed [`Query`] over JSON values, for stores without a query engine of
//! their own (Mecha's emulated query). Pure code: no I/O.
//!
//! The rules are those of PostgreSQL's native query (`jsonb`), so one corpus gives the same
//! answer, in the same order, on every store:
//!
//! * a field is found by its dotted path; a segment indexes an array when it is an integer
//!   (negative counts from the end). A value that is not JSON has no fields;
//! * `EQ`, `NEQ` and `IN` compare deeply and by type (`1` equals `1.0`, `"1"` is not `1`); a
//!   missing field matches neither `EQ` nor `NEQ`;
//! * `GT`, `GTE`, `LT`, `LTE` hold only between values of the query value's type (numbers
//!   numerically, strings by their bytes);
//! * sorting uses `jsonb`'s order across types (null < string < number < boolean < array <
//!   object); items without the field come last in either direction; the key breaks ties;
//! * a page holds at most `limit` items; its token is the position of its last item, and
//!   the next page starts strictly after it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::query::{Cmp, Filter, Order, Path, Query, QueryError};

/// Longest page token accepted, in bytes (a token holds the sort values of one item).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// What starts every token this module issues (`mq1.` and base64url of JSON).
const TOKEN_TAG: &str = "mq1.";

/// The value at `path` inside `doc`, as `jsonb #> path` finds it.
pub fn lookup<'a>(doc: &'a Value, path: &Path) -> Option<&'a Value> {
    path.segments().iter().try_fold(doc, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => {
            let i: i64 = seg.parse().ok()?;
            let len = i64::try_from(a.len()).ok()?;
            let at = if i < 0 { len + i } else { i };
            a.get(usize::try_from(at).ok()?)
        }
        _ => None,
    })
}

/// Whether `doc` (`None`: the stored value is not JSON) passes `filter`.
pub fn matches(filter: &Filter, doc: Option<&Value>) -> bool {
    match filter {
        Filter::Compare(cmp, path, want) => {
            let Some(field) = doc.and_then(|d| lookup(d, path)) else {
                return false;
            };
            let ord = jsonb_cmp(field, want);
            match cmp {
                Cmp::Eq => ord == Ordering::Equal,
                Cmp::Neq => ord != Ordering::Equal,
                _ if type_rank(field) != type_rank(want) => false,
                Cmp::Gt => ord == Ordering::Greater,
                Cmp::Gte => ord != Ordering::Less,
                Cmp::Lt => ord == Ordering::Less,
                Cmp::Lte => ord != Ordering::Greater,
            }
        }
        Filter::In(path, values) => doc
            .and_then(|d| lookup(d, path))
            .is_some_and(|f| values.iter().any(|v| jsonb_cmp(f, v) == Ordering::Equal)),
        Filter::And(children) => children.iter().all(|c| matches(c, doc)),
        Filter::Or(children) => children.iter().any(|c| matches(c, doc)),
    }
}

/// `jsonb`'s rank of a value's type.
fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::String(_) => 1,
        Value::Number(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// `jsonb`'s total order: by type rank, then numbers numerically, strings by bytes,
/// arrays and objects by size first, then element by element (objects by key in `jsonb`'s
/// storage order: shorter keys first).
pub fn jsonb_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter()
                .zip(y)
                .map(|(p, q)| jsonb_cmp(p, q))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        (Value::Object(x), Value::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            let (kx, ky) = (storage_order(x), storage_order(y));
            for (p, q) in kx.iter().zip(&ky) {
                let o = p
                    .len()
                    .cmp(&q.len())
                    .then_with(|| p.cmp(q))
                    .then_with(|| jsonb_cmp(&x[p.as_str()], &y[q.as_str()]));
                if o.is_ne() {
                    return o;
                }
            }
            Ordering::Equal
        }),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// An object's keys in `jsonb`'s storage order: shorter keys first, then by bytes.
fn storage_order(m: &serde_json::Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by(|p, q| p.len().cmp(&q.len()).then_with(|| p.cmp(q)));
    keys
}

fn cmp_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(x), int(y)) {
        (Some(p), Some(q)) => p.cmp(&q),
        _ => {
            let (p, q) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            p.total_cmp(&q)
        }
    }
}

/// Where an item stands in a query's order: its sort fields (each with its direction) and
/// its key. Ordered as the query orders items.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    values: Vec<(Option<Value>, Order)>,
    key: String,
}

impl Position {
    /// The position of the item `key` with value `doc` under the sort keys of `query`.
    pub fn of(query: &Query, key: &str, doc: Option<&Value>) -> Position {
        Position {
            values: query
                .sort
                .iter()
                .map(|s| (doc.and_then(|d| lookup(d, &s.key)).cloned(), s.order))
                .collect(),
            key: key.to_owned(),
        }
    }

    /// The opaque page token that resumes after this position.
    pub fn token(&self) -> String {
        let values: Vec<&Option<Value>> = self.values.iter().map(|(v, _)| v).collect();
        let json = serde_json::json!([self.key, values]);
        format!("{TOKEN_TAG}{}", URL_SAFE_NO_PAD.encode(json.to_string()))
    }

    /// Reads a token issued by [`Position::token`] for a query with the sort keys of `query`.
    pub fn from_token(query: &Query, token: &str) -> Result<Position, QueryError> {
        let bad = || QueryError(format!("invalid page token {:?}", short(token)));
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad());
        }
        let raw = token.strip_prefix(TOKEN_TAG).ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
        let parsed: (String, Vec<Option<Value>>) =
            serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let (key, values) = parsed;
        if values.len() != query.sort.len() {
            return Err(bad());
        }
        Ok(Position {
            values: values
                .into_iter()
                .zip(&query.sort)
                .map(|(v, s)| (v, s.order))
                .collect(),
            key,
        })
    }

    /// The item's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The start of a token, for error messages.
fn short(token: &str) -> &str {
    let end = token.char_indices().nth(32).map_or(token.len(), |(i, _)| i);
    &token[..end]
}

impl Eq for Position {}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        for ((a, order), (b, _)) in self.values.iter().zip(&other.values) {
            let o = match (a, b) {
                (None, None) => Ordering::Equal,
                // Missing fields come last whatever the direction (NULLS LAST).
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => match order {
                    Order::Asc => jsonb_cmp(a, b),
                    Order::Desc => jsonb_cmp(b, a),
                },
            };
            if o.is_ne() {
                return o;
            }
        }
        self.key.cmp(&other.key)
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Ranked<T> {
    at: Position,
    item: T,
}

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

/// The position of the item `key` with the decoded value `doc` under `query`, if it passes
/// the filter.
pub fn rank(query: &Query, key: &str, doc: Option<&Value>) -> Option<Position> {
    query
        .filter
        .as_ref()
        .is_none_or(|f| matches(f, doc))
        .then(|| Position::of(query, key, doc))
}

/// One page of a query, built from items offered in any order: keeps only the items after
/// the token's position that could be on the page (at most `limit + 1`).
pub struct PageBuilder<'q, T> {
    query: &'q Query,
    after: Option<Position>,
    limit: usize,
    best: BinaryHeap<Ranked<T>>,
}

/// A finished page: items in order, and the token of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in the query's order.
    pub items: Vec<T>,
    /// The token that resumes after the last item, when more items follow.
    pub token: Option<String>,
}

impl<'q, T> PageBuilder<'q, T> {
    /// A page of `query`, resuming after its token (if any).
    pub fn new(query: &'q Query) -> Result<PageBuilder<'q, T>, QueryError> {
        let after = query
            .page
            .token
            .as_deref()
            .map(|t| Position::from_token(query, t))
            .transpose()?;
        Ok(PageBuilder {
            query,
            after,
            limit: usize::try_from(query.page.limit).unwrap_or(usize::MAX),
            best: BinaryHeap::new(),
        })
    }

    /// Offers the item `key` with the decoded value `doc` (`None`: not JSON). Returns whether
    /// it matches the filter.
    pub fn offer(&mut self, key: &str, doc: Option<&Value>, item: T) -> bool {
        match rank(self.query, key, doc) {
            Some(at) => {
                self.offer_at(at, item);
                true
            }
            None => false,
        }
    }

    /// Offers an item already ranked by [`rank`] (which may run elsewhere, e.g. on a
    /// blocking thread).
    pub fn offer_at(&mut self, at: Position, item: T) {
        if self.after.as_ref().is_some_and(|after| at <= *after) {
            return;
        }
        self.best.push(Ranked { at, item });
        if self.limit > 0 && self.best.len() > self.limit.saturating_add(1) {
            self.best.pop();
        }
    }

    /// Items held now (at most `limit + 1`, or every match when there is no limit).
    pub fn held(&self) -> usize {
        self.best.len()
    }

    /// The page.
    pub fn finish(self) -> Page<T> {
        let mut ranked = self.best.into_sorted_vec();
        let mut token = None;
        if self.limit > 0 && ranked.len() > self.limit {
            ranked.truncate(self.limit);
            token = ranked.last().map(|r| r.at.token());
        }
        Page {
            items: ranked.into_iter().map(|r| r.item).collect(),
            token,
        }
    }
}

#[cfg(test)]
mod tests;
