//! Arbitrary words through BuildKit-style expansion, with every lexer option: no panic, no
//! hang, no stack overflow (`${a:-${a:-…}}` nests as deep as the input allows).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::Lexer;

const VARS: &[(&str, &str)] = &[
    ("A", "a"),
    ("EMPTY", ""),
    ("SPACES", " x  y "),
    ("HOME", "/root"),
    ("GLOB", "*?[]\\"),
    ("NESTED", "${A}$A"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&options, word)) = data.split_first() else {
        return;
    };
    let word = String::from_utf8_lossy(word);
    let lexer = Lexer::new(if options & 1 == 0 { '\\' } else { '`' })
        .raw_quotes(options & 2 != 0)
        .raw_escapes(options & 4 != 0)
        .skip_unset(options & 8 != 0)
        .skip_process_quotes(options & 16 != 0);
    let _ = lexer.process(&word, &VARS);
    let _ = lexer.expand_words(&word, &VARS);
    let _ = strata_frontend::expand(&word, &VARS);
});
