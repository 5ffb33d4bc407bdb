group
