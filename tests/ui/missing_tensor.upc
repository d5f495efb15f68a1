use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny_no_fc_bias.safetensors"
