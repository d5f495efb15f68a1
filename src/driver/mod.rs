//! Driver: runs the properties of a checked program through engine, MILP and attacks, and reports.

pub mod artifacts;
pub mod command;
pub mod process;
pub mod progress;
pub mod report;
pub mod verify;
