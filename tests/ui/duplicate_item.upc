const eps = 1/255
const eps = 2/255
