// Paper Table 3 (ResNet-4B; slow: about 3 minutes per ε on 2 cores): the CIFAR-10 ResNet-2B and ResNet-4B (VNN-COMP 2021, PGD-trained) at ε = 1/255
// and 3/255 on ERAN's first 100 CIFAR-10 test images. These files live in ../shared (outside
// the repository); the ResNets normalise their input inside the network, so ε is in pixel units.
//
//   upcc verify examples/table3_resnet_4b.upc

use std::nets::resnet_4b

network resnet4b = resnet_4b() weights "../../shared/external/vnncomp2021/cifar10_resnet/onnx/resnet_4b.onnx"

dataset cifar = csv("../../shared/external/eran/cifar10_test.csv", shape: [3, 32, 32], layout: hwc)

perturbation up = universal linf eps [1/255, 3/255]

property resnet_4b_pgd = certify accuracy of resnet4b on cifar under up { compare: samplewise }
