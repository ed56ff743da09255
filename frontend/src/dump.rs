//! BuildKit's dump of the raw parse: one `(keyword ["flag" …] "arg" …)` line per instruction.
//!
//! This is the text of the upstream parser's `Node.Dump`, which the conformance corpus stores
//! as `result`: keywords lower-cased the way Go's `strings.ToLower` does, every flag and
//! argument quoted by Go's `strconv.Quote`, ONBUILD's instruction nested in parentheses.

use crate::ast::{Args, Dockerfile, Instruction};
use crate::quote::quote_into;
use crate::rune;

/// The dump of `dockerfile`, one line per instruction, each ending in `\n`.
pub fn dump(dockerfile: &Dockerfile) -> String {
    let mut out = String::new();
    for instruction in &dockerfile.instructions {
        out.push('(');
        dump_instruction(&mut out, instruction);
        out.push_str(")\n");
    }
    out
}

/// The dump of one instruction, without the surrounding parentheses.
pub fn dump_instruction(out: &mut String, instruction: &Instruction) {
    let start = out.len();
    // Go trims the node's text, which only shows when the keyword is empty (a lone
    // continuation escape at the end of the file): `("")`, not `( "")`.
    let separate = |out: &mut String| {
        if out.len() > start {
            out.push(' ');
        }
    };
    // Go's ToLower turns invalid bytes into U+FFFD, so the result is always UTF-8.
    out.push_str(&String::from_utf8_lossy(&rune::to_lower_go(
        instruction.keyword.as_bytes(),
    )));
    if !instruction.flags.is_empty() {
        separate(out);
        out.push('[');
        for (i, flag) in instruction.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            quote_into(out, flag.text.as_bytes());
        }
        out.push(']');
    }
    if let Args::Onbuild(inner) = &instruction.args {
        separate(out);
        out.push('(');
        dump_instruction(out, inner);
        out.push(')');
        return;
    }
    for value in instruction.args.values() {
        separate(out);
        quote_into(out, value);
    }
}

#[cfg(test)]
mod tests {
    use crate::{dump, parse};

    #[test]
    fn a_lone_escape_at_the_end_is_an_empty_instruction() {
        // BuildKit keeps a node with an empty keyword, and its dump trims the space.
        let df = parse(b"FROM a\n\\\n").unwrap();
        assert_eq!(dump(&df), "(from \"a\")\n(\"\")\n");
        assert_eq!(dump(&parse(b"\\\n\n").unwrap()), "(\"\")\n");
    }
}
