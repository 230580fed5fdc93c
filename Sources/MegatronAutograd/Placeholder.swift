// MegatronAutograd
