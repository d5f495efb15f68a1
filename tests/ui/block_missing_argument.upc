use std::nets::basic_block
block net() {
    input [8, 8, 8]
    b1 = basic_block(8, 16)
    flatten
    fc = linear(256, 10)
}
network n = net()
