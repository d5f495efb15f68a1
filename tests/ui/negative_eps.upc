perturbation p = universal linf eps [2/255, -4/255]
