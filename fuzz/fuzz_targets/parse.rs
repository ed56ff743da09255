//! Arbitrary bytes through the raw parser and the dump: no panic, no hang, no overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dockerfile) = strata_frontend::parse(data) else {
        return;
    };
    let dump = strata_frontend::dump(&dockerfile);
    assert_eq!(dump.lines().count(), dockerfile.instructions.len());
    for instruction in &dockerfile.instructions {
        assert!(instruction.range.start <= instruction.range.end);
    }
    // Expansion: once the typed layer exists (wip/semantics), expand every word of every
    // instruction here with a fixed environment, e.g.
    //     strata_frontend::expand(word, &env)
    // and check it never panics and stays within its size limit.
});
