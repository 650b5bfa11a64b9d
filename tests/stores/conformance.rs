//! One behavioural suite for every backend: each case checks a capability the store declares,
//! or that an undeclared one is refused (`Unsupported`) rather than faked. A backend joins
//! with one `conformance!` line. Backends are driven directly through `StateStore` (no actors,
//! no HTTP), with keys under a random base so runs never collide.

mod cases;
mod harness;
mod query_reference;

use harness::Backend;

/// Stamps out one test per case for a backend.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            conformance!(@cases $make;
                get_missing_is_none, set_then_get_round_trips_bytes, every_write_changes_the_etag,
                stale_etag_is_a_mismatch, invalid_etag_is_invalid, etag_on_missing_key_is_a_mismatch,
                empty_etag_is_normalised_by_the_gateway_not_the_store, last_write_without_etag_overwrites,
                first_write_is_create_only, first_write_with_etag_is_a_normal_check,
                delete_missing_key_is_ok, delete_with_etag_is_guarded, ttl_expires_and_reports_expire_time,
                ttl_never_and_plain_writes_clear_expiry, bulk_get_preserves_order_and_missing,
                bulk_set_keeps_good_items_when_one_etag_fails, bulk_delete_reports_per_key,
                transaction_applies_every_operation, transaction_is_all_or_nothing,
                transaction_sees_its_own_earlier_operations, concurrent_etag_increments_lose_nothing,
                racing_writers_with_one_etag_have_one_winner, keys_with_unusual_characters,
                query_filters_like_dapr_conformance, query_compares_by_json_type, query_sorts_and_pages,
                query_sees_only_its_key_prefix, query_skips_expired_items, query_rejects_invalid_queries,
                query_answers_like_the_reference, query_pages_like_the_reference,
                query_over_the_scan_limit_fails, undeclared_ttl_is_refused_not_ignored,
            );
        }
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend: Backend = $make.await;
                cases::$case(&backend).await;
            }
        )+
    };
}

conformance!(in_memory, harness::in_memory());
conformance!(kv_in_memory, harness::kv_in_memory());
conformance!(redis, harness::redis());
conformance!(redis_cluster, harness::redis_cluster());
conformance!(postgresql, harness::postgresql());
conformance!(sqlite, harness::sqlite());
conformance!(mysql, harness::mysql());

/// Redis Cluster with the keys of each test spread over hash slots (and so over primaries):
/// every case but the multi-key transactions, which a cluster refuses across slots
/// (`transactions_across_slots_are_refused`, and `redis_cluster.rs`).
mod redis_cluster_spread {
    use super::*;
    conformance!(@cases harness::redis_cluster_spread();
        get_missing_is_none, set_then_get_round_trips_bytes, every_write_changes_the_etag,
        stale_etag_is_a_mismatch, invalid_etag_is_invalid, etag_on_missing_key_is_a_mismatch,
        empty_etag_is_normalised_by_the_gateway_not_the_store, last_write_without_etag_overwrites,
        first_write_is_create_only, first_write_with_etag_is_a_normal_check,
        delete_missing_key_is_ok, delete_with_etag_is_guarded, ttl_expires_and_reports_expire_time,
        ttl_never_and_plain_writes_clear_expiry, bulk_get_preserves_order_and_missing,
        bulk_set_keeps_good_items_when_one_etag_fails, bulk_delete_reports_per_key,
        transaction_sees_its_own_earlier_operations, concurrent_etag_increments_lose_nothing,
        racing_writers_with_one_etag_have_one_winner, keys_with_unusual_characters,
        query_filters_like_dapr_conformance, query_compares_by_json_type, query_sorts_and_pages,
        query_sees_only_its_key_prefix, query_skips_expired_items, query_rejects_invalid_queries,
        query_answers_like_the_reference, query_pages_like_the_reference,
        query_over_the_scan_limit_fails, undeclared_ttl_is_refused_not_ignored,
    );
}
/// Redis Cluster with `clusterKeyPlacement: prefix`: the query cases (the listing maps the
/// Redis keys `{prefix}||key` back to state keys).
mod redis_cluster_by_prefix {
    use super::*;
    conformance!(@cases harness::redis_cluster_by_prefix();
        query_filters_like_dapr_conformance, query_compares_by_json_type, query_sorts_and_pages,
        query_sees_only_its_key_prefix, query_skips_expired_items, query_rejects_invalid_queries,
        query_answers_like_the_reference, query_pages_like_the_reference,
        query_over_the_scan_limit_fails,
    );
}
conformance!(jetstream, harness::jetstream());
conformance!(etcd, harness::etcd());

/// Key listing (`StateStore::list_keys`), on the stores that implement it with pages of at
/// most `limit` keys (Redis pages follow `SCAN`, whose count is a hint: its listing is proven
/// by the query cases).
mod list_keys {
    use super::*;

    #[tokio::test]
    async fn in_memory() {
        cases::list_keys_pages_every_live_key(&harness::in_memory().await).await;
    }

    #[tokio::test]
    async fn etcd() {
        cases::list_keys_pages_every_live_key(&harness::etcd().await).await;
    }

    #[tokio::test]
    async fn jetstream() {
        cases::list_keys_pages_every_live_key(&harness::jetstream().await).await;
    }

    #[tokio::test]
    async fn sqlite() {
        cases::list_keys_pages_every_live_key(&harness::sqlite().await).await;
    }

    #[tokio::test]
    async fn mysql() {
        cases::list_keys_pages_every_live_key(&harness::mysql().await).await;
    }
}
