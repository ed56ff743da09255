//! Arbitrary words through BuildKit-style expansion, with every lexer option: no panic, no
//! hang, no stack overflow (`${a:-${a:-…}}` nests as deep as the input allows, and stops at
//! `MAX_NESTING` with an error), and no result beyond the growth limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_frontend::{ExpandErrorKind, Lexer, MAX_GROWTH};

const VARS: &[(&str, &str)] = &[
    ("A", "a"),
    ("EMPTY", ""),
    ("SPACES", " x  y "),
    ("HOME", "/root"),
    ("GLOB", "*?[]\\"),
    ("NESTED", "${A}$A"),
    ("NL", "a\nb"),
    ("LONG", "abababababababababababababababababababababababababababababababab"),
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
    let checked = |result: Result<String, strata_frontend::ExpandError>| {
        match result {
            Ok(value) => assert!(value.len() <= word.len() + MAX_GROWTH, "grew past the limit"),
            Err(e) => {
                if let ExpandErrorKind::TooDeep { offset } = e.kind {
                    assert!(offset < word.chars().count(), "TooDeep points into the word");
                }
                // Messages stay short whatever the word.
                assert!(e.to_string().len() < 400 + e.kind.to_string().len());
            }
        }
    };
    let processed = lexer.process(&word, &VARS);
    let words = lexer.expand_words(&word, &VARS);
    let value = lexer.expand(&word, &VARS);
    // The three entry points agree: the value and the fields come from one scan.
    match (&processed, &words, &value) {
        (Ok(p), Ok(w), Ok(v)) => {
            assert_eq!(&p.value, v);
            assert_eq!(&p.words, w);
        }
        (Err(a), Err(b), Err(c)) => {
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
        _ => panic!("process, expand_words and expand disagree on success"),
    }
    checked(value);
    checked(strata_frontend::expand(&word, &VARS));
});
