//! SQL text of the PostgreSQL backend: identifiers, the schema, the prepared statements and
//! the translation of a parsed state query. Pure code (no I/O), so it is unit-tested without a
//! database. User data only ever travels as bind parameters; the only things spliced into SQL
//! text are table names, which [`Ident::parse`] restricts to `[a-z_][a-z0-9_]*`.

use std::fmt::Write as _;

use serde_json::Value;
use tokio_postgres::types::{Json, ToSql};

use crate::capabilities::query::{Cmp, Filter, Order, Query};

/// The schema version this code creates and understands.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Advisory lock key serialising every Mecha migration on a database (`"mecha"` in ASCII).
pub(super) const MIGRATION_LOCK: i64 = 0x6d_65_63_68_61;

/// Longest accepted table name: PostgreSQL truncates identifiers at 63 bytes, and the derived
/// sequence and index names add up to 13.
const MAX_TABLE_NAME: usize = 50;

/// A validated, lower-cased, optionally schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ident {
    schema: Option<String>,
    name: String,
}

impl Ident {
    /// Parses `table` or `schema.table`. Each part must match `[A-Za-z_][A-Za-z0-9_]*` and is
    /// lower-cased, as PostgreSQL folds unquoted names (so `State` and `state` are one table,
    /// as they are for Dapr).
    pub(super) fn parse(raw: &str) -> Result<Ident, String> {
        let parts: Vec<&str> = raw.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => (None, *name),
            [schema, name] => (Some(*schema), *name),
            _ => return Err(format!("'{raw}' must be 'table' or 'schema.table'")),
        };
        let check = |part: &str, max: usize| -> Result<String, String> {
            let mut chars = part.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && part.len() <= max;
            if ok {
                Ok(part.to_ascii_lowercase())
            } else {
                Err(format!(
                    "'{raw}' is not a valid table name: use letters, digits and '_' \
                     (not starting with a digit), at most {max} characters per part"
                ))
            }
        };
        Ok(Ident {
            schema: schema.map(|s| check(s, 63)).transpose()?,
            name: check(name, MAX_TABLE_NAME)?,
        })
    }

    /// The quoted SQL name, with `suffix` appended to the table part.
    pub(super) fn quoted(&self, suffix: &str) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}{suffix}\"", self.name),
            None => format!("\"{}{suffix}\"", self.name),
        }
    }

    /// `schema.table` or `table`, for messages and metadata-table keys.
    pub(super) fn plain(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Every statement text, built once per component from its table names.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) table: String,
    pub(super) metadata: String,
    pub(super) get: String,
    pub(super) bulk_get: String,
    pub(super) upsert: String,
    pub(super) insert_first: String,
    pub(super) update_etag: String,
    pub(super) delete: String,
    pub(super) delete_etag: String,
    pub(super) bulk_set: String,
    pub(super) bulk_delete: String,
    pub(super) ping: String,
    pub(super) cleanup_claim: String,
    pub(super) cleanup_delete: String,
    pub(super) read_version: String,
    pub(super) write_version: String,
    pub(super) check_layout: String,
    /// Version 1 of the schema (run under the migration lock, inside the transaction): the
    /// table, then (once its layout is checked) the sequence and the index.
    pub(super) create_v1: String,
    pub(super) create_v1_rest: String,
    pub(super) create_metadata: String,
}

/// Rows that have not expired.
const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

/// Cleanup deletes at most this many rows per statement, so it never holds long locks.
pub(super) const CLEANUP_BATCH: i64 = 1000;

impl Sql {
    /// Builds the statements for a state table and a metadata table.
    pub(super) fn new(table: &Ident, metadata: &Ident) -> Sql {
        let t = table.quoted("");
        let m = metadata.quoted("");
        let seq = table.quoted("_version_seq");
        // `nextval` takes the sequence as text; the name is a validated identifier.
        let next = format!("nextval('{}')", seq.replace('\'', "''"));
        let expiry = |ttl: &str| format!("now() + {ttl} * interval '1 second'");
        let set_columns = "value = excluded.value, value_json = excluded.value_json, \
                           version = excluded.version, expires_at = excluded.expires_at, \
                           updated_at = excluded.updated_at";
        let insert_one = format!(
            "INSERT INTO {t} AS s (key, value, value_json, version, expires_at, updated_at) \
             VALUES ($1, $2, $3, {next}, {}, now()) ON CONFLICT (key) DO UPDATE SET {set_columns}",
            expiry("$4::integer")
        );
        let insert_many = |filter: &str| {
            format!(
                "INSERT INTO {t} AS s (key, value, value_json, version, expires_at, updated_at) \
                 SELECT key, value, value_json, {next}, {}, now() FROM input WHERE {filter} \
                 ON CONFLICT (key) DO UPDATE SET {set_columns}",
                expiry("ttl")
            )
        };
        // First-write: create-only, but a row that expired and was not yet cleaned up counts
        // as absent.
        let only_expired = "WHERE s.expires_at IS NOT NULL AND s.expires_at <= now()";
        Sql {
            get: format!("SELECT value, version, expires_at FROM {t} WHERE key = $1 AND {LIVE}"),
            bulk_get: format!(
                "SELECT key, value, version, expires_at FROM {t} WHERE key = ANY($1) AND {LIVE}"
            ),
            upsert: insert_one.clone(),
            insert_first: format!("{insert_one} {only_expired}"),
            update_etag: format!(
                "UPDATE {t} SET value = $2, value_json = $3, version = {next}, expires_at = {}, \
                 updated_at = now() WHERE key = $1 AND version = $5 AND {LIVE}",
                expiry("$4::integer")
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_etag: format!("DELETE FROM {t} WHERE key = $1 AND version = $2 AND {LIVE}"),
            // One statement per batch of distinct keys: ETag-guarded updates, last-write
            // upserts and first-write inserts, each returning the keys it wrote.
            bulk_set: format!(
                "WITH input AS (SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[], \
                 $4::integer[], $5::bigint[], $6::boolean[]) \
                 AS i(key, value, value_json, ttl, etag, first_write)), \
                 by_etag AS (UPDATE {t} AS s SET value = i.value, value_json = i.value_json, \
                 version = {next}, expires_at = {}, updated_at = now() FROM input i \
                 WHERE i.etag IS NOT NULL AND s.key = i.key AND s.version = i.etag \
                 AND (s.expires_at IS NULL OR s.expires_at > now()) RETURNING s.key), \
                 last_write AS ({} RETURNING s.key), \
                 first_write AS ({} {only_expired} RETURNING s.key) \
                 SELECT key FROM by_etag UNION ALL SELECT key FROM last_write \
                 UNION ALL SELECT key FROM first_write",
                expiry("i.ttl"),
                insert_many("etag IS NULL AND NOT first_write"),
                insert_many("etag IS NULL AND first_write"),
            ),
            bulk_delete: format!(
                "WITH input AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS i(key, etag)) \
                 DELETE FROM {t} AS s USING input i WHERE s.key = i.key AND (i.etag IS NULL OR \
                 (s.version = i.etag AND (s.expires_at IS NULL OR s.expires_at > now()))) \
                 RETURNING s.key"
            ),
            ping: "SELECT 1".to_owned(),
            // Claims the cleanup for this interval, so several Mecha instances sharing the
            // table do not all sweep it.
            cleanup_claim: format!(
                "INSERT INTO {m} AS m (key, value) VALUES ($1, now()::text) \
                 ON CONFLICT (key) DO UPDATE SET value = now()::text \
                 WHERE m.value::timestamptz <= now() - $2::bigint * interval '1 millisecond'"
            ),
            cleanup_delete: format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() \
                 LIMIT {CLEANUP_BATCH} FOR UPDATE SKIP LOCKED) AND expires_at <= now()"
            ),
            read_version: format!("SELECT value FROM {m} WHERE key = $1"),
            write_version: format!(
                "INSERT INTO {m} (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            check_layout: format!(
                "SELECT key, value, value_json, version, expires_at, updated_at FROM {t} WHERE false"
            ),
            create_v1: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                   key text COLLATE \"C\" NOT NULL PRIMARY KEY, \
                   value bytea NOT NULL, \
                   value_json jsonb NULL, \
                   version bigint NOT NULL, \
                   expires_at timestamptz NULL, \
                   updated_at timestamptz NOT NULL DEFAULT now())"
            ),
            create_v1_rest: format!(
                "CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint; \
                 CREATE INDEX IF NOT EXISTS \"{}_expires_at_idx\" ON {t} (expires_at) \
                 WHERE expires_at IS NOT NULL;",
                // An index lives in its table's schema, so its name is never qualified.
                table.name,
            ),
            create_metadata: format!(
                "CREATE TABLE IF NOT EXISTS {m} (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
            ),
            table: t,
            metadata: m,
        }
    }
}

/// A bind parameter of a translated query.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// A state query as SQL: text, parameters, and the paging it applies.
pub(super) struct QuerySql {
    pub(super) text: String,
    pub(super) params: Vec<Param>,
    /// Rows skipped (the decoded page token).
    pub(super) offset: u64,
    /// Page size; 0 means unlimited. The SQL fetches one row more to learn whether a next
    /// page exists.
    pub(super) limit: u64,
}

/// Escapes `LIKE` wildcards so `prefix` matches literally (the escape character is `\`).
pub(super) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

struct Builder {
    sql: String,
    params: Vec<Param>,
}

impl Builder {
    fn param(&mut self, p: Param) -> usize {
        self.params.push(p);
        self.params.len()
    }

    /// `(value_json #> $n::text[])` for a path.
    fn path(&mut self, segments: &[String]) -> String {
        let n = self.param(Box::new(segments.to_vec()));
        format!("(value_json #> ${n}::text[])")
    }

    fn filter(&mut self, f: &Filter) {
        match f {
            Filter::Compare(cmp, path, value) => {
                let field = self.path(path.segments());
                let v = self.param(Box::new(Json(value.clone())));
                let op = match cmp {
                    Cmp::Eq => "=",
                    Cmp::Neq => "<>",
                    Cmp::Gt => ">",
                    Cmp::Gte => ">=",
                    Cmp::Lt => "<",
                    Cmp::Lte => "<=",
                };
                if cmp.is_ordering() {
                    // jsonb orders across types (a boolean is greater than any number), so an
                    // ordering only holds between values of the query value's type: numbers
                    // compare numerically, strings as text.
                    let _ = write!(
                        self.sql,
                        "(jsonb_typeof({field}) = jsonb_typeof(${v}::jsonb) AND {field} {op} ${v}::jsonb)"
                    );
                } else {
                    // jsonb equality is typed and deep (1 = 1.0, "1" <> 1). A missing field
                    // is SQL NULL and matches neither EQ nor NEQ, as in Dapr's SQL stores.
                    let _ = write!(self.sql, "{field} {op} ${v}::jsonb");
                }
            }
            Filter::In(path, values) => {
                let field = self.path(path.segments());
                let list: Vec<Json<Value>> = values.iter().cloned().map(Json).collect();
                let v = self.param(Box::new(list));
                let _ = write!(self.sql, "{field} = ANY(${v}::jsonb[])");
            }
            Filter::And(children) | Filter::Or(children) => {
                let joiner = if matches!(f, Filter::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                self.sql.push('(');
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        self.sql.push_str(joiner);
                    }
                    self.filter(child);
                }
                self.sql.push(')');
            }
        }
    }
}

/// Translates a parsed query over the keys starting with `key_prefix`. Fails only on a page
/// token this store did not issue.
pub(super) fn translate(table: &str, q: &Query, key_prefix: &str) -> Result<QuerySql, String> {
    let offset = match q.page.token.as_deref() {
        None => 0,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|o| i64::try_from(*o).is_ok())
            .ok_or_else(|| format!("invalid page token {t:?}"))?,
    };
    let limit = q.page.limit.min(i64::MAX as u64 - 1);
    let mut b = Builder {
        sql: format!("SELECT key, value, version FROM {table} WHERE key LIKE $1 AND {LIVE}"),
        params: vec![Box::new(like_prefix(key_prefix))],
    };
    if let Some(f) = &q.filter {
        b.sql.push_str(" AND ");
        b.filter(f);
    }
    b.sql.push_str(" ORDER BY ");
    for s in &q.sort {
        let field = b.path(s.key.segments());
        let dir = match s.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        // Rows without the field come last in either direction.
        let _ = write!(b.sql, "{field} {dir} NULLS LAST, ");
    }
    // The key breaks ties, so pages are stable.
    b.sql.push_str("key ASC");
    if limit > 0 {
        let n = b.param(Box::new(limit as i64 + 1));
        let _ = write!(b.sql, " LIMIT ${n}");
    }
    if offset > 0 {
        let n = b.param(Box::new(offset as i64));
        let _ = write!(b.sql, " OFFSET ${n}");
    }
    Ok(QuerySql {
        text: b.sql,
        params: b.params,
        offset,
        limit,
    })
}
