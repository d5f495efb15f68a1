const width = 28
const bad = width / (width - 28)
