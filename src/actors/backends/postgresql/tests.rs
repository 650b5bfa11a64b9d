//! Pure unit tests of the PostgreSQL backend. The database-backed ones are in
//! `tests/stores/postgres.rs`, `tests/stores/postgres_durability.rs` and the conformance suite.

use super::sql::{Ident, Sql, like_prefix, translate};
use super::*;

#[test]
fn table_names_are_strict_identifiers() {
    let ok = [
        ("state", "\"state\"", "state"),
        ("State_1", "\"state_1\"", "state_1"),
        ("_x", "\"_x\"", "_x"),
        ("public.state", "\"public\".\"state\"", "public.state"),
    ];
    for (raw, quoted, plain) in ok {
        let id = Ident::parse(raw).unwrap();
        assert_eq!(id.quoted(""), quoted, "{raw}");
        assert_eq!(id.plain(), plain, "{raw}");
    }
    assert_eq!(
        Ident::parse("s.t").unwrap().quoted("_seq"),
        "\"s\".\"t_seq\""
    );
    let bad = [
        "",
        "1x",
        "a-b",
        "a b",
        "a\"b",
        "a;b",
        "a.b.c",
        ".a",
        "a.",
        "ä",
        "x'y",
        &"x".repeat(51),
    ];
    for raw in bad {
        assert!(Ident::parse(raw).is_err(), "{raw:?} accepted");
    }
    assert!(Ident::parse(&"x".repeat(50)).is_ok());
}

#[test]
fn like_prefix_escapes_wildcards() {
    let cases = [
        ("", "%"),
        ("app||", "app||%"),
        ("a_b%c\\d", "a\\_b\\%c\\\\d%"),
    ];
    for (prefix, want) in cases {
        assert_eq!(like_prefix(prefix), want, "{prefix}");
    }
}

#[test]
fn rounds_split_repeated_keys_in_order() {
    let items: Vec<(usize, &str)> = ["a", "b", "a", "c", "a", "b"]
        .into_iter()
        .enumerate()
        .collect();
    let got: Vec<Vec<usize>> = rounds(items, |k| k)
        .into_iter()
        .map(|r| r.into_iter().map(|(i, _)| i).collect())
        .collect();
    assert_eq!(got, [vec![0, 1, 3], vec![2, 5], vec![4]]);
    assert!(rounds(Vec::<(usize, &str)>::new(), |k| k).is_empty());
}

#[test]
fn json_values_are_indexed_only_when_postgres_accepts_them() {
    let cases: &[(&[u8], bool)] = &[
        (br#"{"a":[1,2,{"b":null}]}"#, true),
        (br#""str""#, true),
        (b"12.5", true),
        (b"true", true),
        (br#""\u0041""#, true),
        (br#"{"a":"x\u0000"}"#, false),
        (br#"{"\u0000":1}"#, false),
        (br#""\ud800""#, false),
        (b"1e999999", false),
        (b"", false),
        (b"{", false),
        (&[0xff, 0x00], false),
        (b"hello", false),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            json_of(bytes).is_some(),
            *want,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn ttl_maps_to_seconds_or_null() {
    assert_eq!(ttl_param(None), None);
    assert_eq!(ttl_param(Some(Ttl::Never)), None);
    assert_eq!(ttl_param(Some(Ttl::Seconds(5))), Some(5));
    assert_eq!(ttl_param(Some(Ttl::Seconds(u32::MAX))), Some(i32::MAX));
}

#[test]
fn cleanup_interval_parsing() {
    let cases = [
        ("1h", Some(Some(Duration::from_secs(3600)))),
        ("30", Some(Some(Duration::from_secs(30)))),
        ("0", Some(None)),
        ("0s", Some(None)),
        ("-1", Some(None)),
        ("-5m", Some(None)),
        ("soon", None),
    ];
    for (raw, want) in cases {
        assert_eq!(parse_cleanup(raw).ok(), want, "{raw}");
    }
}

#[test]
fn etags_are_decimal_versions() {
    assert_eq!(parse_etag("42"), Ok(42));
    for bad in ["", "x", "1.0", "0x10", "99999999999999999999", " 1"] {
        assert_eq!(
            parse_etag(bad),
            Err(StoreError::EtagInvalid(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn statements_use_only_quoted_names() {
    let sql = Sql::new(
        &Ident::parse("s.t").unwrap(),
        &Ident::parse("meta").unwrap(),
    );
    assert!(sql.upsert.contains("INSERT INTO \"s\".\"t\""));
    assert!(sql.upsert.contains("nextval('\"s\".\"t_version_seq\"')"));
    assert!(
        sql.create_v1_rest
            .contains("INDEX IF NOT EXISTS \"t_expires_at_idx\" ON \"s\".\"t\"")
    );
    assert!(sql.cleanup_claim.contains("\"meta\""));
}

#[test]
fn queries_translate_to_bound_parameters() {
    let q = Query::parse(
        r#"{"filter":{"AND":[{"EQ":{"a.b":"x'; DROP TABLE t; --"}},{"GT":{"n":1}},{"IN":{"c":[1,"2"]}}]},
            "sort":[{"key":"n","order":"DESC"},{"key":"a"}],"page":{"limit":10,"token":"20"}}"#,
    )
    .unwrap();
    let t = translate("\"state\"", &q, "app||").unwrap();
    assert_eq!(
        t.text,
        "SELECT key, value, version FROM \"state\" WHERE key LIKE $1 AND \
         (expires_at IS NULL OR expires_at > now()) AND \
         ((value_json #> $2::text[]) = $3::jsonb AND \
         (jsonb_typeof((value_json #> $4::text[])) = jsonb_typeof($5::jsonb) AND (value_json #> $4::text[]) > $5::jsonb) AND \
         (value_json #> $6::text[]) = ANY($7::jsonb[])) \
         ORDER BY (value_json #> $8::text[]) DESC NULLS LAST, (value_json #> $9::text[]) ASC NULLS LAST, key ASC \
         LIMIT $10 OFFSET $11"
    );
    assert_eq!(t.params.len(), 11);
    assert!(!t.text.contains("DROP"));
    assert_eq!((t.offset, t.limit), (20, 10));

    let t = translate("\"state\"", &Query::default(), "").unwrap();
    assert!(t.text.ends_with("ORDER BY key ASC"), "{}", t.text);
    assert_eq!(t.params.len(), 1);

    for bad in ["x", "-1", "1.5", "99999999999999999999"] {
        let mut q = Query::default();
        q.page.token = Some(bad.into());
        assert!(translate("\"state\"", &q, "").is_err(), "{bad}");
    }
}

#[test]
fn descriptor_declares_query_and_durable_features() {
    assert!(DESCRIPTOR.matches("state.postgres"));
    for c in [
        Capability::Etag,
        Capability::Transactional,
        Capability::QueryApi,
        Capability::Ttl,
        Capability::FirstWrite,
        Capability::BulkNative,
    ] {
        assert!(DESCRIPTOR.capabilities.has(c), "{c}");
    }
    let f = DESCRIPTOR.field("connectionstring").unwrap();
    assert!(f.required && f.sensitive);
}
