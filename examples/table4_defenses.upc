// Paper Table 4 (and Table 7): UAP defenses compared by certified robust rate and by the three
// UAP attacks, at ε = 16/255 and 80/255; Conv-small on MNIST, one model per training recipe.
//
//   upcc verify examples/table4_defenses.upc --out out/table4

use std::nets::conv_small

network normal_model = conv_small() weights "../models/mnist/conv_small_natural.safetensors"
network fgsm_model = conv_small() weights "../models/mnist/conv_small_fgsm.safetensors"
network pgd_model = conv_small() weights "../models/mnist/conv_small_pgd16.safetensors"
network uat_fgsm_model = conv_small() weights "../models/mnist/conv_small_uat_fgsm.safetensors"
network uat_pgd_model = conv_small() weights "../models/mnist/conv_small_uat_pgd.safetensors"
network ibp_model = conv_small() weights "../models/mnist/conv_small_ibp.safetensors"

dataset digits = npz("../data/mnist/heldout.npz") | scale 1/255 | sample 100 seed 4

perturbation up = universal linf eps [16/255, 80/255]

property normal = certify accuracy of normal_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
property fgsm = certify accuracy of fgsm_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
property pgd = certify accuracy of pgd_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
property uat_fgsm = certify accuracy of uat_fgsm_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
property uat_pgd = certify accuracy of uat_pgd_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
property ibp = certify accuracy of ibp_model on digits under up { attacks: [df_uap, cos_uap, adv_uap] }
