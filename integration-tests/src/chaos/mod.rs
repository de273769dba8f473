//! The fault-injection harness: concurrent clients against a real cluster
//! under a random schedule of faults, their history checked for
//! linearizability.

pub mod history;
pub mod linearizability;
