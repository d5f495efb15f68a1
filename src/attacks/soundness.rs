//! Certificates checked against attacks: a certified number above what an attack achieves, or a
//! sample certified sample-wise that some attack fools, is a soundness failure.

use std::fmt;

use super::AttackResult;

/// One way a certificate contradicts an attack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoundnessViolation {
    /// More samples certified than remain correct under the attack's perturbation(s).
    CountAboveAttack {
        attack: String,
        certified: usize,
        attacked: usize,
        /// Which certificate: `"universal"` or `"sample-wise"`.
        certificate: &'static str,
    },
    /// A sample certified robust for every δ in the box is misclassified under the attack's δ.
    CertifiedSampleFooled { attack: String, sample: usize },
}

impl fmt::Display for SoundnessViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoundnessViolation::CountAboveAttack {
                attack,
                certified,
                attacked,
                certificate,
            } => write!(
                f,
                "{certificate} certificate claims {certified} robust samples, but {attack} leaves only {attacked} correct"
            ),
            SoundnessViolation::CertifiedSampleFooled { attack, sample } => write!(
                f,
                "sample {sample} is certified sample-wise, but {attack} misclassifies it"
            ),
        }
    }
}

/// Checks certificates against attack results on the same samples and box.
///
/// `samplewise_certified[i]` says sample i is certified for every δ in the box; `universal_certified`
/// is the certified count against one shared δ. Every attack bounds the universal count; only the
/// sample-wise attack bounds the sample-wise count (it may use a different δ per sample), but any
/// attack's δ must leave every sample-wise certified sample correct.
pub fn check_certificates(
    samplewise_certified: &[bool],
    universal_certified: usize,
    attacks: &[AttackResult],
) -> Vec<SoundnessViolation> {
    let samplewise_count = samplewise_certified.iter().filter(|&&c| c).count();
    let mut violations = Vec::new();
    for result in attacks {
        let (certificate, certified) = match result {
            AttackResult::Universal(_) => ("universal", universal_certified),
            AttackResult::Samplewise(_) => ("sample-wise", samplewise_count),
        };
        if certified > result.correct() {
            violations.push(SoundnessViolation::CountAboveAttack {
                attack: result.name().to_string(),
                certified,
                attacked: result.correct(),
                certificate,
            });
        }
        for (sample, (&cert, &correct)) in samplewise_certified
            .iter()
            .zip(result.correct_mask())
            .enumerate()
        {
            if cert && !correct {
                violations.push(SoundnessViolation::CertifiedSampleFooled {
                    attack: result.name().to_string(),
                    sample,
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::{SamplewiseAttackResult, UniversalAttackResult};
    use ndarray::Array2;

    fn universal(mask: &[bool]) -> AttackResult {
        AttackResult::Universal(UniversalAttackResult {
            name: "df_uap".into(),
            delta: vec![0.0],
            correct: mask.iter().filter(|&&c| c).count(),
            correct_mask: mask.to_vec(),
        })
    }

    fn samplewise(mask: &[bool]) -> AttackResult {
        AttackResult::Samplewise(SamplewiseAttackResult {
            name: "samplewise_pgd".into(),
            deltas: Array2::zeros((mask.len(), 1)),
            correct: mask.iter().filter(|&&c| c).count(),
            correct_mask: mask.to_vec(),
        })
    }

    #[test]
    fn consistent_certificates_pass() {
        let attacks = [
            universal(&[true, true, false, true]),
            samplewise(&[true, false, false, true]),
        ];
        assert!(check_certificates(&[true, false, false, true], 3, &attacks).is_empty());
    }

    #[test]
    fn a_universal_count_above_an_attack_is_reported() {
        let attacks = [universal(&[true, false, false, true])];
        assert_eq!(
            check_certificates(&[false; 4], 3, &attacks),
            vec![SoundnessViolation::CountAboveAttack {
                attack: "df_uap".into(),
                certified: 3,
                attacked: 2,
                certificate: "universal",
            }]
        );
    }

    #[test]
    fn the_samplewise_attack_bounds_only_the_samplewise_count() {
        // Sample-wise PGD may fool more samples than any universal δ: 1 < universal 3 is fine.
        let attacks = [samplewise(&[true, false, false, false])];
        assert!(check_certificates(&[true, false, false, false], 3, &attacks).is_empty());
        let violations = check_certificates(&[true, true, false, false], 0, &attacks);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations.contains(&SoundnessViolation::CertifiedSampleFooled {
                attack: "samplewise_pgd".into(),
                sample: 1
            })
        );
    }

    #[test]
    fn a_fooled_certified_sample_is_reported_even_when_counts_agree() {
        let attacks = [universal(&[false, true, true])];
        assert_eq!(
            check_certificates(&[true, false, false], 1, &attacks),
            vec![SoundnessViolation::CertifiedSampleFooled {
                attack: "df_uap".into(),
                sample: 0
            }]
        );
    }
}
