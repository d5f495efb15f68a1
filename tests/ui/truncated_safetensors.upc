use "modules/tiny.upc"
network net = tiny() weights "fixtures/tiny_truncated.safetensors"
