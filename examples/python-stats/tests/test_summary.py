import unittest

from stats import mean, median, summarize


class MeanTest(unittest.TestCase):
    def test_mean_of_integers(self):
        self.assertEqual(mean([1, 2, 3, 4]), 2.5)

    def test_mean_of_empty_list_raises(self):
        with self.assertRaises(ValueError):
            mean([])


class MedianTest(unittest.TestCase):
    def test_median_of_odd_count(self):
        self.assertEqual(median([5, 1, 3]), 3)

    def test_median_of_even_count(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)


class SummarizeTest(unittest.TestCase):
    def test_summary_line(self):
        self.assertEqual(
            summarize([3, 1, 4, 1, 5]), "count=5 min=1 max=5 mean=2.80 median=3"
        )
