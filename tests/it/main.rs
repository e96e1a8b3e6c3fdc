//! The integration tests, one binary: each module is one area (the CLI,
//! the examples, the parser, …; `up_*` drive `flowrun up` on real process
//! trees built from `flowrun-probe`). Shared helpers live in `support`.

mod support;

mod cli;
mod control;
mod control_up;
mod corpus;
mod examples;
mod exec_runtime;
mod graph;
mod never_panics;
mod parse;
mod parse_fast;
mod pysrc;
mod resolve;
mod rules;
mod up_clean_children;
mod up_contain;
mod up_deadline;
mod up_escalation;
mod up_exactly_once;
mod up_hostile;
mod up_logfile;
mod up_no_early_death;
mod up_nothing_left;
mod up_order;
mod up_output;
mod up_pid1;
mod up_python_pool;
mod up_reaping;
mod up_relay;
mod up_restart_ready;
mod up_support;
