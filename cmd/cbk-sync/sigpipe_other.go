//go:build !unix

package main

func catchSIGPIPE() {}
