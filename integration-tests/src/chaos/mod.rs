//! The fault-injection harness (`make chaos`, the `kv-chaos` binary):
//! concurrent clients against a real cluster under a random schedule of
//! faults, their history checked for linearizability, and kill -9 cycles
//! that check every acknowledged write survives.
//!
//! * [`schedule`] draws a history's faults from its seed: kill -9 and
//!   restart, SIGSTOP/SIGCONT, `KV_CRASH_AT` crash points, isolation and
//!   one-way link cuts.
//! * [`partition`] is the proxy between the nodes' peer ports that cuts
//!   links; [`nodes`] starts the cluster behind it and acts on its nodes.
//! * [`clients`] are the concurrent clients that record the [`history`].
//! * [`run`] plays one history and checks it: [`linearizability`], no
//!   acknowledged write lost ([`acked`]), replicas equal ([`replicas`]).
//! * [`kill_cycles`] is the kill -9 durability mode; [`report`] is what a
//!   run found. docs/reliability.md tells how to run and replay it.

pub mod acked;
pub mod clients;
pub mod history;
pub mod kill_cycles;
pub mod linearizability;
pub mod nodes;
pub mod partition;
pub mod replicas;
pub mod report;
pub mod run;
pub mod schedule;
