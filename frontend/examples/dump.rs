//! Prints the BuildKit dump of the Dockerfiles named on the command line.
#![expect(clippy::print_stdout, reason = "a debugging example")]

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = fs_err::read(&path).expect("read the Dockerfile");
        match strata_frontend::parse(&bytes) {
            Ok(df) => print!("{}", strata_frontend::dump(&df)),
            Err(e) => println!("{path}:{}: {e}", e.loc),
        }
    }
}
