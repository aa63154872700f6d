# Exercise 02.1 — solution: intercept + Σ coefficient · feature, the noise left out
answer = -1200 + 12 * 40 + 0.015 * 70_000 + 2 * 720
