use "modules/tiny.upc"
network a = tiny() weights "fixtures/tiny.safetensors"
network b = tiny() weights "fixtures/tiny.safetensors"
dataset d = noise(shape: [1, 28, 28], count: 4, seed: 1)
perturbation p = universal linf eps 8/255
// A scan may average several networks; certified accuracy is of one.
property scan = certify classwise accuracy of [a, b] on d under p
property r = certify accuracy of [a, b] on d under p
