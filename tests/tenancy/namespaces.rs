//! Key namespaces cannot collide. A property test generates app ids, store
//! names, key prefix strategies, physical placements (Redis hosts spelled several ways,
//! databases, in-memory stores, one SQLite file and table spelled several ways, MySQL servers
//! spelled several ways with two schemas) and keys; every configuration Mecha accepts (the
//! settings parser, the component loader and `namespace_problems`, exactly what start-up and
//! `mecha check` run) maps no two (app, store, key) triples of different tenants to the same
//! physical key. Configurations holding an id with a character outside `[A-Za-z0-9._-]` are
//! refused outright. Where a key lands is known to the test by construction (every spelling
//! of one server, file or table is one place), not taken from Mecha.

use std::path::Path;

use mecha::config::{LoadedComponent, Settings, namespace_problems, parse_components};
use mecha::keys::{KeyPrefix, id_problem, is_legal};
use proptest::prelude::*;

/// Who owns a key: the tenant namespace a (app, store) pair writes in.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// `keyPrefix: appid`: the app's own keys.
    App(String),
    /// `keyPrefix: name`: shared by the apps of one store name.
    Store(String),
    /// A custom `keyPrefix`: shared on purpose by every store giving the same prefix.
    Custom(String),
    /// `keyPrefix: none`: bare keys, shared on purpose.
    Bare,
}

fn owner(c: &LoadedComponent, app: &str) -> Owner {
    match &c.key_prefix {
        KeyPrefix::AppId => Owner::App(app.to_owned()),
        KeyPrefix::StoreName => Owner::Store(c.name.clone()),
        KeyPrefix::Custom(p) => Owner::Custom(p.clone()),
        KeyPrefix::None => Owner::Bare,
    }
}

/// Ids from a tiny alphabet, so that equal ids (and ids one `|` apart) are frequent.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ab]{1,2}",
        1 => "[ab|.]{0,3}",
    ]
}

#[derive(Debug, Clone)]
struct StoreSpec {
    name: String,
    prefix: String,
    /// 0..3: Redis at `HOSTS[i]` with database 0 or 1; 3: in-memory; 4, 5: SQLite, one file
    /// (`SQLITE_FILES[i]`) and table (spelled `state` or `State`); 6, 7: MySQL at
    /// `MYSQL_DSNS[i]`, table `state` in schema `s0` or `s1`.
    place: usize,
    scope: Option<usize>,
}

const HOSTS: [&str; 3] = ["127.0.0.1:6379", "localhost", "redis://127.0.0.1:6379"];

/// One SQLite file (that does not exist yet, as on a first start) spelled three ways.
const SQLITE_FILES: [&str; 3] = [
    "target/mecha-ns-test/state.db",
    "./target/../target/mecha-ns-test/state.db",
    "file:target/mecha-ns-test/state.db?mode=rwc",
];

/// One MySQL server spelled three ways (the database in the DSN is not where the tables are).
const MYSQL_DSNS: [&str; 3] = [
    "root:@tcp(127.0.0.1:3306)/test",
    "app:secret@tcp(localhost)/other",
    "root@tcp(LOCALHOST:3306)/",
];

fn store() -> impl Strategy<Value = StoreSpec> {
    (
        id(),
        prop_oneof![
            Just("appid".to_owned()),
            Just("name".to_owned()),
            Just("none".to_owned()),
            id(),
        ],
        0usize..8,
        proptest::option::of(0usize..3),
    )
        .prop_map(|(name, prefix, place, scope)| StoreSpec {
            name,
            prefix,
            place,
            scope,
        })
}

fn component_yaml(s: &StoreSpec, spelling: usize, apps: &[String]) -> String {
    let spec = match s.place {
        0..=2 => format!(
            "  type: state.redis\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: redisDB\n    value: \"{}\"\n",
            HOSTS[spelling],
            s.place % 2
        ),
        3 => "  type: state.in-memory\n  metadata:\n".to_owned(),
        4 | 5 => format!(
            "  type: state.sqlite\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: tableName\n    value: {}\n",
            SQLITE_FILES[spelling],
            if s.place == 4 { "state" } else { "State" }
        ),
        _ => format!(
            "  type: state.mysql\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: schemaName\n    value: s{}\n  - name: tableName\n    value: state\n",
            MYSQL_DSNS[spelling],
            s.place % 2
        ),
    };
    let scopes = match s.scope.and_then(|i| apps.get(i)) {
        Some(a) => format!("scopes:\n  - \"{a}\"\n"),
        None => String::new(),
    };
    format!(
        "kind: Component\nmetadata:\n  name: \"{}\"\nspec:\n{spec}  - name: keyPrefix\n    value: \"{}\"\n{scopes}",
        s.name, s.prefix
    )
}

/// The physical key space a store spec writes in, by construction: one Redis server with
/// databases 0 and 1, one SQLite table, one MySQL server with schemas `s0` and `s1`; an
/// in-memory store is its own.
fn physical(s: &StoreSpec) -> Option<String> {
    match s.place {
        0..=2 => Some(format!("redis/db{}", s.place % 2)),
        3 => None,
        4 | 5 => Some("sqlite/state".into()),
        _ => Some(format!("mysql/s{}/state", s.place % 2)),
    }
}

proptest! {
    // The regressions file sits next to this file (proptest's default would look for it
    // under `tests/proptest-regressions/`, since this directory holds a `main.rs`).
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::with_cases(2000)
    })]

    #[test]
    fn no_two_tenants_share_a_physical_key(
        apps in proptest::collection::vec(id(), 0..3),
        default_app in id(),
        stores in proptest::collection::vec(store(), 1..4),
        hosts in proptest::collection::vec(0usize..3, 4),
        keys in proptest::collection::vec("[ab|]{0,3}", 1..5),
        token in any::<bool>(),
    ) {
        let mut apps = apps;
        apps.dedup();
        let mut names: Vec<&str> = stores.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        prop_assume!(names.len() == stores.len());

        let settings_yaml = if apps.is_empty() {
            String::new()
        } else {
            let mut y = "apps:\n".to_owned();
            for (i, a) in apps.iter().enumerate() {
                y.push_str(&format!("  - id: \"{a}\"\n    token: t{i}\n"));
            }
            y
        };
        let settings = Settings::parse(Path::new("mecha.yaml"), &settings_yaml);
        let docs: Vec<String> = stores
            .iter()
            .enumerate()
            .map(|(i, s)| component_yaml(s, hosts[i], &apps))
            .collect();
        let texts: Vec<(&Path, &str)> =
            docs.iter().map(|d| (Path::new("c.yaml"), d.as_str())).collect();
        let components = parse_components(&texts, &|_| None);

        // An id outside the character set is refused wherever it appears.
        let bad_app = apps.iter().any(|a| id_problem(a).is_some());
        prop_assert_eq!(settings.is_err(), bad_app, "apps {:?}", apps);
        let bad_prefix = stores.iter().any(|s| {
            !["appid", "name", "none", ""].contains(&s.prefix.as_str())
                && id_problem(&s.prefix).is_some()
        });
        if bad_prefix {
            prop_assert!(components.is_err(), "stores {:?}", stores);
        }
        let (Ok(mut settings), Ok((components, _))) = (settings, components) else {
            return Ok(());
        };
        if token {
            settings.api_token = Some("dapr-token".into());
        }
        let problems =
            namespace_problems(Path::new("mecha.yaml"), &settings, &components, &default_app);
        if id_problem(&default_app).is_some() {
            prop_assert!(!problems.is_empty());
        }
        for c in &components {
            if c.key_prefix == KeyPrefix::StoreName && id_problem(&c.name).is_some() {
                prop_assert!(!problems.is_empty(), "store name {:?} is a prefix", c.name);
            }
        }
        if !problems.is_empty() {
            return Ok(());
        }

        // Accepted: every (app, store, key) a caller can reach, with its physical key.
        let mut callers: Vec<&str> = apps.iter().map(String::as_str).collect();
        if apps.is_empty() || token {
            callers.push(&default_app);
        }
        let mut seen: Vec<(String, String, Owner, &str, String)> = Vec::new();
        for c in &components {
            for app in callers.iter().filter(|a| c.visible_to(a)) {
                for key in keys.iter().filter(|k| is_legal(k) && !k.is_empty()) {
                    let stored = c.key_prefix.apply(app, &c.name, key);
                    prop_assert_eq!(mecha::keys::original_key(&stored), key.as_str());
                    let who = owner(c, app);
                    // Where the key lands, as this test knows it (not as Mecha computes it):
                    // every spelling of a server, file or table is the same place.
                    let spec = stores.iter().find(|s| s.name == c.name).expect("spec");
                    if let Some(place) = physical(spec) {
                        for (p, s, o, k, store) in &seen {
                            if *p == place && *s == stored {
                                prop_assert!(
                                    *o == who && *k == key.as_str(),
                                    "{:?} key {:?} on store {:?} and {:?} key {:?} on store {:?} are both {:?} at {}",
                                    o, k, store, who, key, c.name, stored, place
                                );
                            }
                        }
                        seen.push((place.clone(), stored.clone(), who.clone(), key, c.name.clone()));
                    }
                }
            }
        }
    }
}

/// The two collisions of the issue, refused with a message naming both stores.
#[test]
fn the_reported_collisions_are_refused() {
    let settings = Settings::parse(
        Path::new("mecha.yaml"),
        "apps:\n  - id: orders\n    token: a\n  - id: \"orders|\"\n    token: b\n",
    )
    .unwrap_err();
    assert_eq!(settings[0].field, "apps[1].id", "{settings:?}");
    assert!(settings[0].message.contains("'|'"), "{settings:?}");

    let settings = Settings::parse(
        Path::new("mecha.yaml"),
        "apps:\n  - id: billing\n    token: a\n  - id: orders\n    token: b\n",
    )
    .unwrap();
    let redis = |name: &str, host: &str, prefix: &str| {
        format!(
            "kind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n  - name: keyPrefix\n    value: {prefix}\n"
        )
    };
    let text = format!(
        "{}---\n{}",
        redis("rds", "127.0.0.1:6379", "appid"),
        redis("billing", "localhost", "name")
    );
    let (components, _) = parse_components(&[(Path::new("c.yaml"), &text)], &|_| None).unwrap();
    let problems = namespace_problems(Path::new("mecha.yaml"), &settings, &components, "x");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let m = &problems[0].message;
    assert!(
        m.contains("store 'billing'") && m.contains("store 'rds'") && m.contains("app 'billing'"),
        "{m}"
    );
    // Another database of the same server is another key space.
    let text = format!(
        "{}---\n{}  - name: redisDB\n    value: \"1\"\n",
        redis("rds", "127.0.0.1:6379", "appid"),
        redis("billing", "localhost", "name")
    );
    let (components, _) = parse_components(&[(Path::new("c.yaml"), &text)], &|_| None).unwrap();
    assert!(namespace_problems(Path::new("mecha.yaml"), &settings, &components, "x").is_empty());
    // A custom prefix equal to an app id, and a store name equal to a custom prefix.
    let text = format!(
        "{}---\n{}---\n{}",
        redis("rds", "127.0.0.1:6379", "appid"),
        redis("shared", "127.0.0.1", "Orders"),
        redis("team", "127.0.0.1", "name"),
    );
    let (mut components, _) = parse_components(&[(Path::new("c.yaml"), &text)], &|_| None).unwrap();
    assert_eq!(
        namespace_problems(Path::new("mecha.yaml"), &settings, &components, "x").len(),
        1
    );
    components[1].key_prefix = KeyPrefix::Custom("team".into());
    let problems = namespace_problems(Path::new("mecha.yaml"), &settings, &components, "x");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("same prefix"), "{problems:?}");
    // An invalid --app-id.
    let problems = namespace_problems(Path::new("mecha.yaml"), &settings, &[], "a|");
    assert_eq!(problems[0].field, "--app-id");
}

/// Every spelling of one SQLite table (file path, `./` and `..` detours, a `file:` URI; the
/// table name in another letter case, SQLite names being case-insensitive) is one physical
/// location, also before the file exists; so is every spelling of one MySQL server. Another
/// MySQL schema is another location.
#[test]
fn spellings_of_one_sql_table_are_one_location() {
    let locations = |yaml: &str| {
        let (components, _) = parse_components(&[(Path::new("c.yaml"), yaml)], &|_| None).unwrap();
        components[0].locations.clone()
    };
    let stores = |place: usize| -> Vec<Vec<String>> {
        (0..3)
            .map(|spelling| {
                let s = StoreSpec {
                    name: "s".into(),
                    prefix: "appid".into(),
                    place,
                    scope: None,
                };
                locations(&component_yaml(&s, spelling, &[]))
            })
            .collect()
    };
    let sqlite: Vec<Vec<String>> = stores(4).into_iter().chain(stores(5)).collect();
    assert_eq!(sqlite[0].len(), 1, "{sqlite:?}");
    assert!(sqlite.iter().all(|l| *l == sqlite[0]), "{sqlite:?}");
    let (s0, s1) = (stores(6), stores(7));
    assert_eq!(s0[0].len(), 1, "{s0:?}");
    assert!(s0.iter().all(|l| *l == s0[0]), "{s0:?}");
    assert!(s1.iter().all(|l| *l == s1[0]), "{s1:?}");
    assert_ne!(s0[0], s1[0]);
}
