use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny.safetensors"
dataset d = noise(shape: [3, 32, 32], count: 4, seed: 1)
perturbation p = universal linf eps 8/255
property r = certify classwise accuracy of net on d under p
