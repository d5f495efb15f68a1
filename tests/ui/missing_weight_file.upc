use std::nets::conv_small
network net = conv_small() weights "no/such/weights.safetensors"
