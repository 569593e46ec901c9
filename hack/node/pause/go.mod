module isvc-operator/pause

go 1.24
