//! `flowrun`: see [`flowrun::cli`].

fn main() {
    std::process::exit(flowrun::cli::main());
}
