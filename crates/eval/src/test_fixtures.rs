//! Shared test data of the metrics, calibration and tuning tests.

use crate::data::Item;

pub(crate) fn item(qs: f64, ql: f64) -> Item {
    Item {
        quality_small: qs,
        quality_large: ql,
        cost_small: 1.0,
        cost_large: 3.0,
    }
}

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// Four prompts: large wins on #0 and #1, ties on #2, small wins on #3.
// quality(0) = (0+0+1+1)/4 = 0.5, quality(1) = (1+1+1+0)/4 = 0.75, gap 0.25.
pub(crate) fn tiny() -> Vec<Item> {
    vec![
        item(0.0, 1.0),
        item(0.0, 1.0),
        item(1.0, 1.0),
        item(1.0, 0.0),
    ]
}
