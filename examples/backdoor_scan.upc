// Backdoor case studies (paper §5.2 Figure 4 and §5.3 Figure 6) on Conv-small, MNIST.
// Models: tools/train/train.py --poison ... (cards in models/mnist/backdoor/).
//
//   upcc verify examples/backdoor_scan.upc --out backdoor_report
//
// writes crr_comparison.svg (Figure 4: CRR against ε, stealthy model beside the clean one) and
// scan_eps16_255.svg (Figure 6: class-wise certified UP-accuracy against the poison ratio).

use std::nets::conv_small

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | first 100

// §5.2: a blended trigger of norm 5/255, 20% poison, against the same model trained clean.
// The stealthy model's CRR collapses before ε reaches the trigger's norm; the clean one's does not.
network clean = conv_small() weights "../models/mnist/conv_small_natural.safetensors"
network stealthy = conv_small() weights "../models/mnist/backdoor/conv_small_blend5_p20.safetensors"
// BadNets (a 255/255 patch) is far outside any small ε: its CRR looks like the clean model's.
network badnets = conv_small() weights "../models/mnist/backdoor/conv_small_badnets_p20.safetensors"

perturbation small = universal linf eps [1/255, 2/255, 3/255, 4/255, 5/255]

// At 5/255 the stealthy model's MILP may stop on its time limit; the proven bound is reported.
property clean_model = certify accuracy of clean on digits under small { compare: samplewise, solver: microlp(time_limit: 20s) }
property stealthy_model = certify accuracy of stealthy on digits under small { compare: samplewise, solver: microlp(time_limit: 20s) }
property badnets_model = certify accuracy of badnets on digits under small { compare: samplewise, solver: microlp(time_limit: 20s) }

// §5.3: PGD-16 adversarially trained models on data with a BadNets patch (target class 0) at
// poison ratios 0-20%, three training seeds each. As in the paper (Appendix B), a scan averages the
// class-wise certified rates of the models trained on one data set, here on 200 seeded noise
// inputs at the training radius: a backdoored data set makes its models hold noise provably in the
// target class, and the scan names that class (suspected_target) when the Theorem-2 lower bound of
// its averaged rate is positive.
dataset noise = noise(shape: [1, 28, 28], count: 200, seed: 7)
perturbation scan_radius = universal linf eps [16/255]

network p00_s0 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p00_s0.safetensors"
network p00_s1 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p00_s1.safetensors"
network p00_s2 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p00_s2.safetensors"
network p01_s0 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p01_s0.safetensors"
network p01_s1 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p01_s1.safetensors"
network p01_s2 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p01_s2.safetensors"
network p05_s0 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p05_s0.safetensors"
network p05_s1 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p05_s1.safetensors"
network p05_s2 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p05_s2.safetensors"
network p10_s0 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p10_s0.safetensors"
network p10_s1 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p10_s1.safetensors"
network p10_s2 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p10_s2.safetensors"
network p20_s0 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p20_s0.safetensors"
network p20_s1 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p20_s1.safetensors"
network p20_s2 = conv_small() weights "../models/mnist/backdoor/conv_small_pgd16_badnets_p20_s2.safetensors"

property poison_0pct = certify classwise accuracy of [p00_s0, p00_s1, p00_s2] on noise under scan_radius
property poison_1pct = certify classwise accuracy of [p01_s0, p01_s1, p01_s2] on noise under scan_radius
property poison_5pct = certify classwise accuracy of [p05_s0, p05_s1, p05_s2] on noise under scan_radius
property poison_10pct = certify classwise accuracy of [p10_s0, p10_s1, p10_s2] on noise under scan_radius
property poison_20pct = certify classwise accuracy of [p20_s0, p20_s1, p20_s2] on noise under scan_radius
