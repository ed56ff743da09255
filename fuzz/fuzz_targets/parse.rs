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
    // Expansion and the typed layer have their own targets: `expand` and `check`.
});
