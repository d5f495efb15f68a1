use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny.safetensors"
dataset d = noise(shape: [1, 28, 28], count: 4, seed: 1)
perturbation p = universal linf eps 8/255
property r = certify accuracy of net on d under p
