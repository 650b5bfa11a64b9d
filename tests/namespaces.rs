//! Issue 20 point 1: key namespaces cannot collide. A property test generates app ids, store
//! names, key prefix strategies, physical placements (Redis hosts spelled several ways,
//! databases, in-memory stores) and keys; every configuration Mecha accepts (the settings
//! parser, the component loader and `namespace_problems`, exactly what start-up and
//! `mecha check` run) maps no two (app, store, key) triples of different tenants to the same
//! physical key. Configurations holding an id with a character outside `[A-Za-z0-9._-]` are
//! refused outright.

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
    /// 0..3: Redis at index 0/1 of `HOSTS` with database 0 or 1; 3: in-memory.
    place: usize,
    scope: Option<usize>,
}

const HOSTS: [&str; 3] = ["127.0.0.1:6379", "localhost", "redis://127.0.0.1:6379"];

fn store() -> impl Strategy<Value = StoreSpec> {
    (
        id(),
        prop_oneof![
            Just("appid".to_owned()),
            Just("name".to_owned()),
            Just("none".to_owned()),
            id(),
        ],
        0usize..4,
        proptest::option::of(0usize..3),
    )
        .prop_map(|(name, prefix, place, scope)| StoreSpec {
            name,
            prefix,
            place,
            scope,
        })
}

fn component_yaml(s: &StoreSpec, host: &str, apps: &[String]) -> String {
    let spec = if s.place == 3 {
        "  type: state.in-memory\n  metadata:\n".to_owned()
    } else {
        format!(
            "  type: state.redis\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n  - name: redisDB\n    value: \"{}\"\n",
            s.place % 2
        )
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

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
            .map(|(i, s)| component_yaml(s, HOSTS[hosts[i]], &apps))
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
                    for place in &c.locations {
                        for (p, s, o, k, store) in &seen {
                            if p == place && *s == stored {
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
