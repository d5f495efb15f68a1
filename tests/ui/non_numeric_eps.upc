perturbation p = universal linf eps "8/255"
