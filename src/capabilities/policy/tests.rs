use super::*;

fn traits(caps: &[Capability], lists_keys: bool) -> StoreTraits {
    StoreTraits {
        native: CapabilitySet::of(caps),
        lists_keys,
        max_transaction_ops: 100,
    }
}

#[test]
fn no_policy_emulates_what_is_correct_and_rejects_the_rest() {
    let kv = traits(&[Capability::Etag, Capability::FirstWrite], true);
    let strict = Matrix::without_policy(kv, Baseline::Strict);
    let compatible = Matrix::without_policy(kv, Baseline::Compatible);
    let got: Vec<(Feature, Status, Status)> = Feature::ALL
        .iter()
        .map(|f| (*f, compatible.status(*f), strict.status(*f)))
        .collect();
    // The two baselines differ only where the option cannot change the result.
    assert_eq!(
        got,
        [
            (Feature::Etag, Status::Native, Status::Native),
            (Feature::FirstWrite, Status::Native, Status::Native),
            (Feature::Transactions, Status::Rejected, Status::Rejected),
            (Feature::Ttl, Status::Emulated, Status::Emulated),
            (Feature::Bulk, Status::Emulated, Status::Emulated),
            (
                Feature::StrongConsistency,
                Status::Rejected,
                Status::Rejected
            ),
            (Feature::Query, Status::Emulated, Status::Emulated),
            (Feature::PartitionKey, Status::Ignored, Status::Rejected),
        ]
    );
    assert_eq!(
        compatible.cell(Feature::PartitionKey).policy_text(),
        "ignore (built-in default)"
    );
    assert_eq!(
        strict.cell(Feature::PartitionKey).policy_text(),
        "reject (default: strict)"
    );
    // Compatible never ignores a guarantee: on a store with nothing, every guarantee is
    // rejected and only partitionKey is ignored.
    let bare = Matrix::without_policy(traits(&[], false), Baseline::Compatible);
    for f in Feature::ALL {
        let want = match f {
            Feature::Bulk => Status::Emulated,
            Feature::PartitionKey => Status::Ignored,
            _ => Status::Rejected,
        };
        assert_eq!(bare.status(f), want, "{f}");
    }
    // Without key listing, without CAS, or on a transactional store, TTL is not emulated.
    for t in [
        traits(&[Capability::Etag, Capability::FirstWrite], false),
        traits(&[Capability::Etag], true),
        traits(&[], true),
        traits(
            &[
                Capability::Etag,
                Capability::FirstWrite,
                Capability::Transactional,
            ],
            true,
        ),
    ] {
        assert_eq!(
            Matrix::without_policy(t, Baseline::Compatible).status(Feature::Ttl),
            Status::Rejected
        );
    }
}

#[test]
fn guarantee_breaking_policies_are_all_listed() {
    let mut policy = Policy::default();
    for (f, a) in [
        (Feature::Etag, Action::Ignore),
        (Feature::FirstWrite, Action::Emulate),
        (Feature::Transactions, Action::Emulate),
        (Feature::StrongConsistency, Action::Emulate),
        (Feature::Ttl, Action::Emulate),
        (Feature::Bulk, Action::Emulate),
    ] {
        policy.features.insert(f, a);
    }
    let problems = Matrix::build(traits(&[], false), &policy).unwrap_err();
    let refused: Vec<Feature> = problems.iter().map(|p| p.feature).collect();
    assert_eq!(
        refused,
        [
            Feature::Etag,
            Feature::FirstWrite,
            Feature::Transactions,
            Feature::Ttl,
            Feature::StrongConsistency
        ]
    );
    let text = problems[0].to_string();
    assert!(
        text.contains("etag") && text.contains("ETAG") && text.contains("ignore"),
        "{text}"
    );
    // The same policy is fine where the store has the capabilities natively.
    let native = traits(
        &[
            Capability::Etag,
            Capability::FirstWrite,
            Capability::Transactional,
            Capability::StrongConsistency,
            Capability::Ttl,
        ],
        false,
    );
    assert!(Matrix::build(native, &policy).is_ok());
}

#[test]
fn the_store_default_applies_where_allowed() {
    let policy = Policy {
        default: Some(Action::Ignore),
        features: BTreeMap::from([(Feature::Bulk, Action::Emulate)]),
        baseline: Baseline::Compatible,
    };
    let m = Matrix::build(
        traits(&[Capability::Etag, Capability::FirstWrite], true),
        &policy,
    )
    .unwrap();
    assert_eq!(m.status(Feature::Ttl), Status::Ignored);
    assert_eq!(m.status(Feature::StrongConsistency), Status::Ignored);
    assert_eq!(m.status(Feature::Bulk), Status::Emulated);
    // Ignore is not allowed for transactions: the built-in default (reject) applies.
    assert_eq!(m.status(Feature::Transactions), Status::Rejected);
    assert_eq!(
        m.cell(Feature::Transactions).origin,
        Origin::BuiltIn(Baseline::Compatible)
    );
    assert_eq!(
        m.cell(Feature::Ttl).policy_text(),
        "ignore (the store's default)"
    );
}

#[test]
fn discovery_lists_native_and_emulated_only() {
    let kv = traits(&[Capability::Etag, Capability::FirstWrite], true);
    let policy = Policy {
        default: Some(Action::Reject),
        features: BTreeMap::from([
            (Feature::Ttl, Action::Emulate),
            (Feature::StrongConsistency, Action::Ignore),
        ]),
        ..Policy::default()
    };
    let m = Matrix::build(kv, &policy).unwrap();
    assert_eq!(m.dapr_strings(), ["ETAG", "TTL"]);
    assert_eq!(
        m.describe(),
        "etag=native,first-write=native,transactions=rejected,ttl=emulated,bulk=rejected,consistency=ignored,query=rejected,partition-key=rejected"
    );
    let full = traits(
        &[
            Capability::Etag,
            Capability::Transactional,
            Capability::FirstWrite,
        ],
        false,
    );
    assert_eq!(
        Matrix::without_policy(full, Baseline::Compatible).dapr_strings(),
        ["ETAG", "TRANSACTIONAL", "ACTOR"]
    );
}

#[test]
fn receipts_are_ordered_and_deduplicated() {
    let mut r = Receipt::default();
    assert_eq!(r.header_value(), None);
    r.add(Feature::StrongConsistency, Status::Ignored);
    r.add(Feature::Ttl, Status::Emulated);
    r.add(Feature::Ttl, Status::Emulated);
    r.add(Feature::Etag, Status::Native);
    assert_eq!(
        r.header_value().as_deref(),
        Some("ttl=emulated, consistency=ignored")
    );
}

#[test]
fn policy_names_parse() {
    for f in Feature::ALL {
        assert_eq!(Feature::parse_policy_name(f.policy_name()), Some(f));
    }
    assert_eq!(Action::parse("emulate"), Ok(Action::Emulate));
    assert!(Action::parse("degrade").is_err());
}

#[test]
fn requirements_follow_the_matrix_and_app_tightenings() {
    // A JetStream-like store: ETag and first-write native, TTL emulated, strong ignored.
    let policy = Policy {
        default: None,
        features: [(Feature::StrongConsistency, Action::Ignore)].into(),
        ..Policy::default()
    };
    let m = Matrix::build(
        traits(&[Capability::Etag, Capability::FirstWrite], true),
        &policy,
    )
    .unwrap();
    let cases = [
        ("ETAG", Some(Status::Native)),
        ("FIRST_WRITE", Some(Status::Native)),
        ("TTL", Some(Status::Emulated)),
        ("TRANSACTIONAL", Some(Status::Rejected)),
        ("QUERY_API", Some(Status::Emulated)),
        ("KEYS_LIKE", Some(Status::Rejected)),
        ("ACTOR", Some(Status::Rejected)),
        ("STRONG_CONSISTENCY", Some(Status::Ignored)),
        ("NOPE", None),
    ];
    for (req, want) in cases {
        assert_eq!(m.requirement_status(req), want, "{req}");
    }
    // An app's tightening rejects what was emulated or ignored; native stays native.
    let t = m.tightened([Feature::Ttl, Feature::StrongConsistency, Feature::Etag]);
    assert_eq!(t.status(Feature::Ttl), Status::Rejected);
    assert_eq!(t.cell(Feature::Ttl).origin, Origin::App);
    assert_eq!(
        t.cell(Feature::Ttl).policy_text(),
        "reject (the app's own policy)"
    );
    assert_eq!(t.status(Feature::StrongConsistency), Status::Rejected);
    assert_eq!(t.status(Feature::Etag), Status::Native);
    assert_eq!(
        m.status(Feature::Ttl),
        Status::Emulated,
        "the store's matrix is untouched"
    );
    let actor = Matrix::without_policy(
        traits(&[Capability::Etag, Capability::Transactional], false),
        Baseline::Compatible,
    );
    assert_eq!(actor.requirement_status("ACTOR"), Some(Status::Native));
}
