//! The `wasqlite` command line.

fn main() {
    eprintln!("wasqlite: the command line arrives with the CLI issue");
    std::process::exit(2);
}
