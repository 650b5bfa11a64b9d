//! The stores: one behavioural suite for every backend (`conformance`), what only one store
//! has (`postgres`, `redis_*`, `etcd`, `jetstream`, `mysql_server`), and acknowledged writes
//! surviving SIGKILL of Mecha (`*_durability`, and `mysql_server`).

mod conformance;
mod etcd;
mod jetstream;
mod mysql_server;
mod postgres;
mod postgres_durability;
mod redis_cluster;
mod redis_failure;
mod redis_replication;
mod sqlite_durability;
#[path = "../support/mod.rs"]
mod support;
