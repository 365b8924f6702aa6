use super::scatter::Scatter;
use crate::rng::Rng;
use switchyard_core::{documented, Args, Batch, Context, Element, ElementClass};

documented! {
    /// Sends each packet to an output chosen uniformly at random (Click's
    /// RandomSwitch).
    ///
    /// The generator is a xorshift64* per element, each seeded
    /// differently: fast and statistically fine for load spreading, not
    /// for anything an adversary must not predict.
    ///
    /// # Ports
    /// One input, one or more outputs; push.
    ///
    /// # Arguments
    /// None.
    ///
    /// # Handlers
    /// None.
    ///
    /// # Example
    /// ```text
    /// rs :: RandomSwitch; rs[0] -> q0; rs[1] -> q1;
    /// ```
    pub struct RandomSwitch {
        rng: Rng,
        scatter: Scatter,
    }
}

impl RandomSwitch {
    pub const CLASS: ElementClass = ElementClass {
        name: "RandomSwitch",
        ports: "1/1-",
        processing: "h/h",
        doc: RandomSwitch::DOC,
        factory: RandomSwitch::make,
    };

    fn make(_: &mut Args) -> Option<Box<dyn Element>> {
        Some(Box::new(RandomSwitch::with_rng(Rng::new())))
    }

    fn with_rng(rng: Rng) -> RandomSwitch {
        RandomSwitch {
            rng,
            scatter: Scatter::new(),
        }
    }
}

impl Element for RandomSwitch {
    fn push(&mut self, _port: usize, batch: Batch, cx: &mut Context<'_>) {
        let n = cx.noutputs() as u64;
        let rng = &mut self.rng;
        self.scatter.send(batch, cx, |_| rng.below(n) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Harness, Packet};

    #[test]
    fn outputs_are_uniform() {
        let outputs = 5;
        let mut h = Harness::new(Box::new(RandomSwitch::with_rng(Rng::seeded(42))), 1, outputs);
        let total = 200_000;
        for _ in 0..total / 250 {
            let mut b = Batch::new();
            for _ in 0..250 {
                b.push(Packet::from_data(&[0; 1]));
            }
            h.push(0, b);
        }
        let counts: Vec<usize> = (0..outputs).map(|o| h.count(o)).collect();
        assert_eq!(counts.iter().sum::<usize>(), total);
        // Chi-square with 4 degrees of freedom: 18.5 is the 0.999 quantile.
        let expected = (total / outputs) as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 < 18.5, "{counts:?} chi2 {chi2}");
    }

    #[test]
    fn consecutive_choices_are_not_correlated() {
        // Pairs of successive outputs among 4 are uniform over the 16 pairs.
        let mut rng = Rng::seeded(7);
        let mut pairs = [0usize; 16];
        let mut prev = rng.below(4) as usize;
        for _ in 0..160_000 {
            let next = rng.below(4) as usize;
            pairs[prev * 4 + next] += 1;
            prev = next;
        }
        let chi2: f64 = pairs.iter().map(|&c| (c as f64 - 10_000.0).powi(2) / 10_000.0).sum();
        // 15 degrees of freedom: 37.7 is the 0.999 quantile.
        assert!(chi2 < 37.7, "{pairs:?}");
    }

    #[test]
    fn elements_get_different_seeds() {
        let make =
            || switchyard_core::downcast::<RandomSwitch>(RandomSwitch::make(&mut Args::parse_str("r", "")).unwrap());
        let (mut a, mut b) = (make().unwrap(), make().unwrap());
        let xa: Vec<u32> = (0..4).map(|_| a.rng.next_u32()).collect();
        let xb: Vec<u32> = (0..4).map(|_| b.rng.next_u32()).collect();
        assert_ne!(xa, xb);
    }
}
