//! The Dapr state query language (`QUERY_API`), parsed into types. Pure code: no I/O, no SQL.
//!
//! A query is `{"filter": {...}, "sort": [{"key": "a.b", "order": "ASC"}], "page": {"limit": N,
//! "token": "..."}}` (spec §1.9). Backends that declare [`super::Capability::QueryApi`] call
//! [`Query::parse`] and translate the result; a [`QueryError`] becomes
//! `StoreError::InvalidQuery("failed to parse JSON query body: ...")`.

use std::fmt;

use serde_json::{Map, Value};

/// Most filter nodes one query may hold (each leaf costs a backend two bind parameters).
pub const MAX_FILTER_NODES: usize = 1000;
/// Deepest `AND`/`OR` nesting accepted.
pub const MAX_FILTER_DEPTH: usize = 32;
/// Most `sort` entries accepted.
pub const MAX_SORT_KEYS: usize = 32;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// The filter, if one was given.
    pub filter: Option<Filter>,
    /// Sort keys, most significant first.
    pub sort: Vec<Sort>,
    /// Paging.
    pub page: Page,
}

/// A dotted field path inside the stored JSON value (`"person.org"` → `["person", "org"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    /// Parses a dotted path; every segment must be non-empty.
    pub fn parse(dotted: &str) -> Result<Path, QueryError> {
        let segments: Vec<String> = dotted.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(QueryError(format!(
                "invalid field path {dotted:?}: empty segment"
            )));
        }
        Ok(Path(segments))
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A comparison operator of a leaf filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `EQ`
    Eq,
    /// `NEQ`
    Neq,
    /// `GT`
    Gt,
    /// `GTE`
    Gte,
    /// `LT`
    Lt,
    /// `LTE`
    Lte,
}

impl Cmp {
    /// The operator's name in the query language.
    pub const fn name(self) -> &'static str {
        match self {
            Cmp::Eq => "EQ",
            Cmp::Neq => "NEQ",
            Cmp::Gt => "GT",
            Cmp::Gte => "GTE",
            Cmp::Lt => "LT",
            Cmp::Lte => "LTE",
        }
    }

    /// Whether this is an ordering (`GT`, `GTE`, `LT`, `LTE`) rather than an equality test.
    pub const fn is_ordering(self) -> bool {
        !matches!(self, Cmp::Eq | Cmp::Neq)
    }
}

/// One filter node.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `{"EQ": {"a.b": v}}` and the other comparisons. Ordering comparisons take a number or
    /// a string.
    Compare(Cmp, Path, Value),
    /// `{"IN": {"a.b": [v1, v2]}}`.
    In(Path, Vec<Value>),
    /// `{"AND": [f1, f2, ...]}` (at least two).
    And(Vec<Filter>),
    /// `{"OR": [f1, f2, ...]}` (at least two).
    Or(Vec<Filter>),
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// `ASC` (the default when `order` is left out).
    #[default]
    Asc,
    /// `DESC`.
    Desc,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// The field.
    pub key: Path,
    /// The direction.
    pub order: Order,
}

/// Paging: `limit` 0 (or absent) means no limit; `token` is the backend's opaque cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// Page size; 0 means unlimited.
    pub limit: u64,
    /// Continuation token from a previous response.
    pub token: Option<String>,
}

/// Why a query does not parse. The message is Dapr-like and safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(msg.into()))
}

impl Query {
    /// Parses the JSON text of a query. Unknown top-level keys are ignored, as in Dapr.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let root: Value = serde_json::from_str(text).map_err(|e| QueryError(e.to_string()))?;
        let Value::Object(root) = root else {
            return err("query must be a JSON object");
        };
        let mut nodes = 0;
        let filter = match root.get("filter") {
            None | Some(Value::Null) => None,
            Some(f) => Some(parse_filter(f, 0, &mut nodes)?),
        };
        let sort = match root.get("sort") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_SORT_KEYS {
                    return err(format!("too many sort keys (at most {MAX_SORT_KEYS})"));
                }
                items.iter().map(parse_sort).collect::<Result<_, _>>()?
            }
            Some(_) => return err("sort must be an array"),
        };
        let page = match root.get("page") {
            None | Some(Value::Null) => Page::default(),
            Some(Value::Object(p)) => parse_page(p)?,
            Some(_) => return err("page must be an object"),
        };
        Ok(Query { filter, sort, page })
    }
}

fn parse_filter(v: &Value, depth: usize, nodes: &mut usize) -> Result<Filter, QueryError> {
    *nodes += 1;
    if *nodes > MAX_FILTER_NODES {
        return err(format!(
            "filter has too many elements (at most {MAX_FILTER_NODES})"
        ));
    }
    if depth > MAX_FILTER_DEPTH {
        return err(format!(
            "filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)"
        ));
    }
    let Value::Object(m) = v else {
        return err("filter unit must be a map");
    };
    let mut entries = m.iter();
    let (Some((op, arg)), None) = (entries.next(), entries.next()) else {
        return err("filter unit must have a single element");
    };
    let cmp = match op.as_str() {
        "EQ" => Cmp::Eq,
        "NEQ" => Cmp::Neq,
        "GT" => Cmp::Gt,
        "GTE" => Cmp::Gte,
        "LT" => Cmp::Lt,
        "LTE" => Cmp::Lte,
        "IN" => {
            let (path, value) = single_pair("IN", arg)?;
            let Value::Array(values) = value else {
                return err("IN filter value must be an array");
            };
            *nodes += values.len();
            if *nodes > MAX_FILTER_NODES {
                return err(format!(
                    "filter has too many elements (at most {MAX_FILTER_NODES})"
                ));
            }
            return Ok(Filter::In(path, values.clone()));
        }
        "AND" | "OR" => {
            let Value::Array(items) = arg else {
                return err(format!("{op} filter must be an array"));
            };
            if items.len() < 2 {
                return err(format!("{op} filter must contain at least two entries"));
            }
            let children = items
                .iter()
                .map(|f| parse_filter(f, depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if op == "AND" {
                Filter::And(children)
            } else {
                Filter::Or(children)
            });
        }
        other => return err(format!("unsupported filter {other:?}")),
    };
    let (path, value) = single_pair(cmp.name(), arg)?;
    if cmp.is_ordering() && !(value.is_number() || value.is_string()) {
        return err(format!(
            "{} filter value must be a number or a string",
            cmp.name()
        ));
    }
    Ok(Filter::Compare(cmp, path, value.clone()))
}

/// `{"<path>": value}` with exactly one pair.
fn single_pair<'a>(op: &str, arg: &'a Value) -> Result<(Path, &'a Value), QueryError> {
    let Value::Object(m) = arg else {
        return err(format!("{op} filter must be a map"));
    };
    let mut entries = m.iter();
    let (Some((k, v)), None) = (entries.next(), entries.next()) else {
        return err(format!("{op} filter must contain a single key/value pair"));
    };
    Ok((Path::parse(k)?, v))
}

fn parse_sort(v: &Value) -> Result<Sort, QueryError> {
    let Value::Object(m) = v else {
        return err("sort entry must be an object");
    };
    let key = match m.get("key") {
        Some(Value::String(k)) => Path::parse(k)?,
        Some(_) => return err("sort key must be a string"),
        None => return err("sort entry must have a key"),
    };
    let order = match m.get("order") {
        None | Some(Value::Null) => Order::Asc,
        Some(Value::String(s)) if s.is_empty() || s == "ASC" => Order::Asc,
        Some(Value::String(s)) if s == "DESC" => Order::Desc,
        Some(other) => {
            return err(format!(
                "invalid sort order {other} (use \"ASC\" or \"DESC\")"
            ));
        }
    };
    Ok(Sort { key, order })
}

fn parse_page(p: &Map<String, Value>) -> Result<Page, QueryError> {
    let limit = match p.get("limit") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            QueryError(format!(
                "page limit must be a non-negative integer, not {v}"
            ))
        })?,
    };
    let token = match p.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.is_empty() => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return err("page token must be a string"),
    };
    Ok(Page { limit, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> Path {
        Path::parse(p).unwrap()
    }

    #[test]
    fn valid_queries_parse() {
        let cases: Vec<(&str, Query)> = vec![
            ("{}", Query::default()),
            (
                r#"{"filter":null,"sort":null,"page":null,"other":1}"#,
                Query::default(),
            ),
            (
                r#"{"filter":{"EQ":{"state":"CA"}}}"#,
                Query {
                    filter: Some(Filter::Compare(Cmp::Eq, path("state"), json!("CA"))),
                    ..Query::default()
                },
            ),
            (
                r#"{"filter":{"GTE":{"product.value":10}}}"#,
                Query {
                    filter: Some(Filter::Compare(Cmp::Gte, path("product.value"), json!(10))),
                    ..Query::default()
                },
            ),
            (
                r#"{"filter":{"NEQ":{"a":{"b":1}}}}"#,
                Query {
                    filter: Some(Filter::Compare(Cmp::Neq, path("a"), json!({"b": 1}))),
                    ..Query::default()
                },
            ),
            (
                r#"{"filter":{"IN":{"m":["x",1,null]}}}"#,
                Query {
                    filter: Some(Filter::In(
                        path("m"),
                        vec![json!("x"), json!(1), json!(null)],
                    )),
                    ..Query::default()
                },
            ),
            (
                r#"{"filter":{"OR":[{"EQ":{"a":1}},{"AND":[{"LT":{"b":2.5}},{"GT":{"c":"x"}}]}]}}"#,
                Query {
                    filter: Some(Filter::Or(vec![
                        Filter::Compare(Cmp::Eq, path("a"), json!(1)),
                        Filter::And(vec![
                            Filter::Compare(Cmp::Lt, path("b"), json!(2.5)),
                            Filter::Compare(Cmp::Gt, path("c"), json!("x")),
                        ]),
                    ])),
                    ..Query::default()
                },
            ),
            (
                r#"{"sort":[{"key":"a.b"},{"key":"c","order":"DESC"},{"key":"d","order":"ASC"}],"page":{"limit":2,"token":"4"}}"#,
                Query {
                    filter: None,
                    sort: vec![
                        Sort {
                            key: path("a.b"),
                            order: Order::Asc,
                        },
                        Sort {
                            key: path("c"),
                            order: Order::Desc,
                        },
                        Sort {
                            key: path("d"),
                            order: Order::Asc,
                        },
                    ],
                    page: Page {
                        limit: 2,
                        token: Some("4".into()),
                    },
                },
            ),
            (r#"{"page":{"limit":0,"token":""}}"#, Query::default()),
        ];
        for (text, want) in cases {
            assert_eq!(Query::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn invalid_queries_are_rejected_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "EOF"),
            ("[]", "must be a JSON object"),
            (r#"{"filter":[]}"#, "filter unit must be a map"),
            (r#"{"filter":{}}"#, "single element"),
            (
                r#"{"filter":{"EQ":{"a":1},"NEQ":{"b":1}}}"#,
                "single element",
            ),
            (
                r#"{"filter":{"LIKE":{"a":"x"}}}"#,
                r#"unsupported filter "LIKE""#,
            ),
            (r#"{"filter":{"eq":{"a":1}}}"#, r#"unsupported filter "eq""#),
            (
                r#"{"filter":{"EQ":{"a":1,"b":2}}}"#,
                "EQ filter must contain a single key/value pair",
            ),
            (r#"{"filter":{"EQ":{}}}"#, "single key/value pair"),
            (r#"{"filter":{"EQ":[1]}}"#, "EQ filter must be a map"),
            (r#"{"filter":{"EQ":{"a..b":1}}}"#, "empty segment"),
            (r#"{"filter":{"EQ":{"":1}}}"#, "empty segment"),
            (
                r#"{"filter":{"GT":{"a":true}}}"#,
                "GT filter value must be a number or a string",
            ),
            (r#"{"filter":{"LTE":{"a":{"b":1}}}}"#, "number or a string"),
            (
                r#"{"filter":{"IN":{"a":1}}}"#,
                "IN filter value must be an array",
            ),
            (
                r#"{"filter":{"AND":[{"EQ":{"a":1}}]}}"#,
                "AND filter must contain at least two entries",
            ),
            (
                r#"{"filter":{"OR":{"EQ":{"a":1}}}}"#,
                "OR filter must be an array",
            ),
            (
                r#"{"filter":{"OR":[{"EQ":{"a":1}},{"BAD":{}}]}}"#,
                "unsupported filter",
            ),
            (r#"{"sort":{"key":"a"}}"#, "sort must be an array"),
            (
                r#"{"sort":[{"order":"ASC"}]}"#,
                "sort entry must have a key",
            ),
            (r#"{"sort":[{"key":1}]}"#, "sort key must be a string"),
            (
                r#"{"sort":[{"key":"a","order":"asc"}]}"#,
                "invalid sort order",
            ),
            (r#"{"page":{"limit":-1}}"#, "non-negative integer"),
            (r#"{"page":{"limit":1.5}}"#, "non-negative integer"),
            (r#"{"page":{"limit":"1"}}"#, "non-negative integer"),
            (r#"{"page":{"token":5}}"#, "page token must be a string"),
            (r#"{"page":[]}"#, "page must be an object"),
        ];
        for (text, want) in cases {
            let got = Query::parse(text).expect_err(text).0;
            assert!(got.contains(want), "{text}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn size_limits_hold() {
        let leaf = r#"{"EQ":{"a":1}}"#;
        let mut deep = leaf.to_owned();
        for _ in 0..=MAX_FILTER_DEPTH {
            deep = format!(r#"{{"AND":[{deep},{leaf}]}}"#);
        }
        let got = Query::parse(&format!(r#"{{"filter":{deep}}}"#))
            .unwrap_err()
            .0;
        assert!(got.contains("nested too deeply"), "{got}");

        let wide = vec![leaf; MAX_FILTER_NODES + 1].join(",");
        let got = Query::parse(&format!(r#"{{"filter":{{"OR":[{wide}]}}}}"#))
            .unwrap_err()
            .0;
        assert!(got.contains("too many elements"), "{got}");

        let many: Vec<String> = (0..=MAX_FILTER_NODES).map(|i| i.to_string()).collect();
        let text = format!(r#"{{"filter":{{"IN":{{"a":[{}]}}}}}}"#, many.join(","));
        assert!(
            Query::parse(&text)
                .unwrap_err()
                .0
                .contains("too many elements")
        );
    }

    #[test]
    fn paths_display_dotted() {
        assert_eq!(path("a.b.c").segments(), ["a", "b", "c"]);
        assert_eq!(path("a.b.c").to_string(), "a.b.c");
    }
}
