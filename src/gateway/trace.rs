//! W3C Trace Context (`traceparent`) parsing and the request span of each front door.
//!
//! A `traceparent` is `version-traceid-parentid-flags`: 55 characters of lowercase hex in
//! four dash-separated fields of 2, 32, 16 and 2 digits. The version `ff` is invalid, as are
//! a trace id or parent id of all zeros. An invalid or absent value is ignored (never an
//! error): the request then has no trace id (none is generated).

/// The header (HTTP) and metadata key (gRPC) carrying the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A valid `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// The trace id: 32 lowercase hex digits, not all zeros.
    pub trace_id: &'a str,
    /// The caller's span id: 16 lowercase hex digits, not all zeros.
    pub parent_id: &'a str,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a `traceparent` value; `None` when it is not valid.
pub fn parse_traceparent(value: &str) -> Option<TraceParent<'_>> {
    if value.len() != 55 || !value.is_ascii() {
        return None;
    }
    let mut parts = value.split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version.len() != 2
        || trace_id.len() != 32
        || parent_id.len() != 16
        || flags.len() != 2
        || ![version, trace_id, parent_id, flags]
            .iter()
            .all(|p| is_lower_hex(p))
        || version == "ff"
        || trace_id.bytes().all(|b| b == b'0')
        || parent_id.bytes().all(|b| b == b'0')
    {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// The span of one request at a front door: its `protocol` and, when the caller sent a valid
/// `traceparent`, its `trace_id`. Every log line of the request is inside it.
///
/// A traced request's span is `info` level, so its lines carry the trace id at the default
/// log level; an untraced request's span is `debug` level, so at the default level it is
/// never created (an enabled span has its fields formatted on every request; the README's
/// tracing section gives the measured cost).
///
/// When traces are exported ([`crate::telemetry`]), the span continues the caller's trace:
/// its parent is the caller's span, so every span Mecha exports for the request is in the
/// caller's trace.
pub fn request_span(protocol: &'static str, traceparent: Option<&[u8]>) -> tracing::Span {
    let parent = traceparent
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(parse_traceparent);
    match parent {
        Some(t) => {
            let span = tracing::info_span!("request", protocol, trace_id = t.trace_id);
            if crate::telemetry::exporting() {
                continue_trace(&span, t);
            }
            span
        }
        None => tracing::debug_span!("request", protocol),
    }
}

/// Makes the caller's span (`traceparent`) the parent of `span`.
fn continue_trace(span: &tracing::Span, t: TraceParent<'_>) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (Ok(trace_id), Ok(span_id)) =
        (TraceId::from_hex(t.trace_id), SpanId::from_hex(t.parent_id))
    else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(t.flags),
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    // Fails only when the span is disabled or already started: then it has no parent to set.
    let _ = span.set_parent(cx);
}

/// The `traceparent` naming Mecha's span of the current request, for the answer, when
/// traces are exported (the caller can then find Mecha's spans in its trace).
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !crate::telemetry::exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_parses() {
        let t = parse_traceparent(VALID).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        let t =
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(t.flags, 0);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // All-zero trace id and parent id.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Wrong lengths (one field short, one long; 55 chars in total).
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            // Too short, too long, trailing data.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            // Non-hex, wrong separators, non-ASCII.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }
}
