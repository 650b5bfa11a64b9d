use serde_json::{Value, json};

use super::*;

fn q(text: &str) -> Query {
    Query::parse(text).unwrap()
}

fn corpus() -> Vec<(&'static str, Value)> {
    vec![
        (
            "a",
            json!({"n": 3, "s": "x", "p": {"org": "dev", "age": 40}, "tags": ["r", "b"]}),
        ),
        (
            "b",
            json!({"n": 1, "s": "y", "p": {"org": "ops", "age": 30}}),
        ),
        (
            "c",
            json!({"n": 2.0, "s": "x", "p": {"org": "dev", "age": 25}}),
        ),
        ("d", json!({"n": "2", "s": null, "p": {"org": "dev"}})),
        ("e", json!({"s": "z", "p": {"org": "ops", "age": 30}})),
        ("f", json!([1, 2])),
    ]
}

/// Keys of the page `text` gives over the corpus, and its token.
fn run(text: &str) -> (Vec<&'static str>, Option<String>) {
    let query = q(text);
    let mut b = PageBuilder::new(&query).unwrap();
    for (k, v) in corpus() {
        b.offer(k, Some(&v), k);
    }
    b.offer("g", None, "g");
    let page = b.finish();
    (page.items, page.token)
}

#[test]
fn every_operator_follows_jsonb() {
    let cases: &[(&str, &[&str])] = &[
        (r#"{"filter":{"EQ":{"s":"x"}}}"#, &["a", "c"]),
        (r#"{"filter":{"EQ":{"n":2}}}"#, &["c"]),
        (r#"{"filter":{"EQ":{"s":null}}}"#, &["d"]),
        (r#"{"filter":{"NEQ":{"s":"x"}}}"#, &["b", "d", "e"]),
        (r#"{"filter":{"GT":{"n":1}}}"#, &["a", "c"]),
        (r#"{"filter":{"GTE":{"n":1}}}"#, &["a", "b", "c"]),
        (r#"{"filter":{"LT":{"n":3}}}"#, &["b", "c"]),
        (r#"{"filter":{"LTE":{"n":"2"}}}"#, &["d"]),
        (r#"{"filter":{"IN":{"p.org":["ops","nope"]}}}"#, &["b", "e"]),
        (r#"{"filter":{"EQ":{"p.age":30}}}"#, &["b", "e"]),
        (r#"{"filter":{"EQ":{"tags.1":"b"}}}"#, &["a"]),
        (r#"{"filter":{"EQ":{"tags.-1":"b"}}}"#, &["a"]),
        (r#"{"filter":{"EQ":{"0":1}}}"#, &["f"]),
        (
            r#"{"filter":{"AND":[{"EQ":{"p.org":"dev"}},{"GT":{"p.age":30}}]}}"#,
            &["a"],
        ),
        (
            r#"{"filter":{"OR":[{"EQ":{"s":"y"}},{"AND":[{"EQ":{"s":"x"}},{"LT":{"n":3}}]}]}}"#,
            &["b", "c"],
        ),
        (
            r#"{"filter":{"EQ":{"p":{"age":30,"org":"ops"}}}}"#,
            &["b", "e"],
        ),
        (r#"{"filter":{"EQ":{"missing":1}}}"#, &[]),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).0, *want, "{text}");
    }
}

#[test]
fn sorts_on_several_keys_with_missing_fields_last() {
    let (keys, token) = run(r#"{"sort":[{"key":"p.org"},{"key":"p.age","order":"DESC"}]}"#);
    assert_eq!(keys, ["a", "c", "d", "b", "e", "f", "g"]);
    assert_eq!(token, None);
    let (keys, _) = run(r#"{"sort":[{"key":"p.org","order":"DESC"},{"key":"p.age"}]}"#);
    assert_eq!(keys, ["b", "e", "c", "a", "d", "f", "g"]);
    // Across types: string < number; missing last in both directions.
    let (keys, _) = run(r#"{"sort":[{"key":"n"}]}"#);
    assert_eq!(keys, ["d", "b", "c", "a", "e", "f", "g"]);
    let (keys, _) = run(r#"{"sort":[{"key":"n","order":"DESC"}]}"#);
    assert_eq!(keys, ["a", "c", "b", "d", "e", "f", "g"]);
    // No sort: by key.
    assert_eq!(run("{}").0, ["a", "b", "c", "d", "e", "f", "g"]);
}

#[test]
fn pages_resume_after_the_last_item_with_a_stable_token() {
    let base = r#""sort":[{"key":"p.org"},{"key":"p.age","order":"DESC"}]"#;
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = match &token {
            None => format!(r#"{{{base},"page":{{"limit":3}}}}"#),
            Some(t) => format!(r#"{{{base},"page":{{"limit":3,"token":"{t}"}}}}"#),
        };
        let (keys, next) = run(&page);
        assert!(keys.len() <= 3);
        // The same call gives the same answer.
        assert_eq!(run(&page), (keys.clone(), next.clone()));
        all.extend(keys);
        token = next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(all, ["a", "c", "d", "b", "e", "f", "g"]);
}

#[test]
fn a_page_holds_at_most_limit_plus_one_items() {
    let query = q(r#"{"page":{"limit":2}}"#);
    let mut b = PageBuilder::new(&query).unwrap();
    for i in (0..100).rev() {
        b.offer(&format!("k{i:03}"), Some(&json!({})), i);
        assert!(b.held() <= 3);
    }
    let page = b.finish();
    assert_eq!(page.items, [0, 1]);
    assert!(page.token.is_some());
}

#[test]
fn a_write_after_the_token_shows_only_when_it_sorts_later() {
    let query = q(r#"{"page":{"limit":1}}"#);
    let mut b = PageBuilder::new(&query).unwrap();
    b.offer("b", Some(&json!({})), "b");
    b.offer("c", Some(&json!({})), "c");
    let token = b.finish().token.unwrap();
    let next = q(&format!(r#"{{"page":{{"limit":5,"token":"{token}"}}}}"#));
    let mut b = PageBuilder::new(&next).unwrap();
    for k in ["a", "b", "c", "d"] {
        b.offer(k, Some(&json!({})), k);
    }
    assert_eq!(b.finish().items, ["c", "d"]);
}

#[test]
fn foreign_or_damaged_tokens_are_refused() {
    let sorted = q(r#"{"sort":[{"key":"a"}]}"#);
    let token = Position::of(&sorted, "k", Some(&json!({"a": 1}))).token();
    assert_eq!(Position::from_token(&sorted, &token).unwrap().key(), "k");
    let unsorted = q("{}");
    for bad in ["4", "mq1.!!", "mq1.e30", &token] {
        let e = Position::from_token(&unsorted, bad).unwrap_err().0;
        assert!(e.contains("invalid page token"), "{bad}: {e}");
    }
    let long = format!("mq1.{}", "A".repeat(MAX_TOKEN_LEN));
    assert!(Position::from_token(&unsorted, &long).is_err());
}

#[test]
fn jsonb_order_is_total_across_types() {
    let ordered = [
        json!(null),
        json!("a"),
        json!("b"),
        json!(-1),
        json!(1.5),
        json!(2),
        json!(false),
        json!(true),
        json!([9]),
        json!([1, 2]),
        json!({"b": 1}),
        json!({"a": 1, "b": 2}),
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(jsonb_cmp(a, b), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(jsonb_cmp(&json!(1), &json!(1.0)), Ordering::Equal);
    assert_eq!(
        jsonb_cmp(&json!({"a": 1, "b": 2}), &json!({"b": 2, "a": 1})),
        Ordering::Equal
    );
}
