// Paper Table 3: the CIFAR-10 ResNet-2B and ResNet-4B (VNN-COMP 2021, PGD-trained) at ε = 1/255
// and 3/255 on ERAN's first 100 CIFAR-10 test images. These files live in ../shared (outside
// the repository); the ResNets normalise their input inside the network, so ε is in pixel units.
//
//   upcc verify examples/table3_resnet_2b.upc --out out/table3

use std::nets::resnet_2b

network resnet2b = resnet_2b() weights "../../shared/external/vnncomp2021/cifar10_resnet/onnx/resnet_2b.onnx"

dataset cifar = csv("../../shared/external/eran/cifar10_test.csv", shape: [3, 32, 32], layout: hwc)

perturbation up = universal linf eps [1/255, 3/255]

property resnet_2b_pgd = certify accuracy of resnet2b on cifar under up { compare: samplewise }
