//! Renders the capability matrix as a markdown table (for `mecha check` and the README).

use super::{Capability, CapabilitySet, Feature, Matrix};

/// One row of the matrix: a component type (or a configured store) and what it does natively.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    /// First column: a component type such as `state.redis`, or a store name.
    pub name: String,
    /// Second column: versions or the store's type.
    pub detail: String,
    /// Native capabilities.
    pub capabilities: CapabilitySet,
    /// Those of `capabilities` that depend on configuration.
    pub conditional: CapabilitySet,
}

/// Renders rows as a GitHub markdown table with one column per capability.
pub fn render_matrix(first_header: &str, second_header: &str, rows: &[MatrixRow]) -> String {
    let mut out = format!("| {first_header} | {second_header} |");
    for c in Capability::ALL {
        out.push_str(&format!(" {} |", c.as_str()));
    }
    out.push_str("\n| --- | --- |");
    for _ in Capability::ALL {
        out.push_str(" :-: |");
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| `{}` | {} |", row.name, row.detail));
        for c in Capability::ALL {
            out.push_str(match (row.capabilities.has(c), row.conditional.has(c)) {
                (true, false) => " ✔ |",
                (true, true) => " (✔) |",
                _ => " – |",
            });
        }
        out.push('\n');
    }
    out
}

/// Renders the effective matrix of configured stores (`mecha check`): one column per
/// negotiable capability, each cell `native`, `emulated`, `ignored` or `rejected`.
pub fn render_effective(stores: &[(String, String, Matrix)]) -> String {
    let mut out = String::from("| store | type |");
    for f in Feature::ALL {
        out.push_str(&format!(" {} |", f.policy_name()));
    }
    out.push_str("\n| --- | --- |");
    for _ in Feature::ALL {
        out.push_str(" --- |");
    }
    out.push('\n');
    for (name, detail, m) in stores {
        out.push_str(&format!("| `{name}` | {detail} |"));
        for f in Feature::ALL {
            let s = m.status(f);
            if f == Feature::Transactions && s.is_real() {
                out.push_str(&format!(" {s} (max {}) |", m.max_transaction_ops()));
            } else {
                out.push_str(&format!(" {s} |"));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_column_per_capability() {
        let rows = [MatrixRow {
            name: "state.x".into(),
            detail: "v1".into(),
            capabilities: CapabilitySet::of(&[Capability::Etag, Capability::Ttl]),
            conditional: CapabilitySet::of(&[Capability::Ttl]),
        }];
        let table = render_matrix("type", "versions", &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("ETAG") && lines[0].contains("STRONG_CONSISTENCY"));
        assert!(
            lines[2].starts_with("| `state.x` | v1 | ✔ | – | – | (✔) |"),
            "{}",
            lines[2]
        );
    }
}
