//! `flowrun`: see [`flowrun::cli`].

fn main() {
    // The guard is this binary re-executed by `flowrun up` (exec/guard.rs).
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(flowrun::exec::guard::GUARD_ARG.as_ref()) {
        let cgroup = args.next().unwrap_or_default();
        std::process::exit(flowrun::exec::guard::guard_main(&cgroup.to_string_lossy()));
    }
    std::process::exit(flowrun::cli::main());
}
