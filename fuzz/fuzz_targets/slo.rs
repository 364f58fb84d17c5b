#![no_main]
use hopscope_analyze::{Slo, SloConfig};

// Any JSON list of SLOs (the fields `[[slo]]` has): each is compiled or
// refused with an error naming it, never a panic; a compiled one
// describes itself.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(configs) = serde_json::from_slice::<Vec<SloConfig>>(data) else {
        return;
    };
    match Slo::compile_all(&configs) {
        Ok(slos) => {
            for s in &slos {
                let _ = s.describe();
                assert!(s.objective > 0.0 && s.objective < 1.0);
            }
        }
        Err(e) => assert!(e.to_string().starts_with("SLO '")),
    }
});
