use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny.safetensors"
dataset d = npz("fixtures/bad_labels.npz")
perturbation p = universal linf eps 8/255
property r = certify accuracy of net on d under p
