//! Small figures the benchmarks of both programs report.

/// The median of `values` (the upper one of an even count; NaN for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `a` then `b`, `warmup + runs` times in turns, and returns the last
/// `runs` results of each. On a machine whose speed drifts (a shared VM) the
/// drift then touches both alike, and the ratio of each turn's pair says
/// more than two medians measured a minute apart.
pub fn in_turns<T>(runs: usize, warmup: usize, mut a: impl FnMut() -> T, mut b: impl FnMut() -> T) -> (Vec<T>, Vec<T>) {
    let (mut from_a, mut from_b) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for turn in 0..warmup + runs {
        let (x, y) = (a(), b());
        if turn >= warmup {
            from_a.push(x);
            from_b.push(y);
        }
    }
    (from_a, from_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_and_says_nan_for_nothing() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0, "the upper of an even count");
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn in_turns_alternates_and_drops_the_warmup() {
        let order = std::cell::RefCell::new(Vec::new());
        let (a, b) = in_turns(
            2,
            1,
            || {
                order.borrow_mut().push('a');
                order.borrow().len()
            },
            || {
                order.borrow_mut().push('b');
                order.borrow().len()
            },
        );
        assert_eq!(order.into_inner(), ['a', 'b', 'a', 'b', 'a', 'b']);
        assert_eq!((a, b), (vec![3, 5], vec![4, 6]));
    }
}
