use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny_bad_fc.safetensors"
