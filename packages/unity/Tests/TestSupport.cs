// The runner, the assertions and the faulty server's fault queue shared by
// the package's C# test programs: ConvokeClientTests here, and the
// UnityWebRequest transport's tests in packages/unity-tests/csharp, which
// compile this file too. A program lists its tests with Test(name, body),
// reads its options with Option and hands both to Run from its Main; the
// tests use the rest with "using static Convoke.Tests.TestSupport;".
using System;
using System.Collections.Generic;
using System.Net.Http;
using System.Threading.Tasks;

namespace Convoke.Tests
{
    public static class TestSupport
    {
        /// <summary>How long a test waits for anything before it fails.</summary>
        public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

        /// <summary>
        /// Runs a test program. With --list, prints the tests' names, one a line. Otherwise runs
        /// the tests in order and prints PASS, FAIL (with the exception) or SKIP per test, then
        /// "N passed, N failed, N skipped"; tests named "e2e: ..." are skipped, with the reason
        /// given, unless endToEnd says the servers they need were passed. Returns the exit code:
        /// non-zero on any failure.
        /// </summary>
        public static int Run(List<KeyValuePair<string, Action>> tests, string[] args, bool endToEnd, string skipReason)
        {
            if (args.Length > 0 && args[0] == "--list")
            {
                foreach (KeyValuePair<string, Action> test in tests) Console.WriteLine(test.Key);
                return 0;
            }
            int passed = 0;
            int failed = 0;
            int skipped = 0;
            foreach (KeyValuePair<string, Action> test in tests)
            {
                if (test.Key.StartsWith("e2e:", StringComparison.Ordinal) && !endToEnd)
                {
                    Console.WriteLine("SKIP " + test.Key + ": " + skipReason);
                    skipped++;
                    continue;
                }
                try
                {
                    test.Value();
                    Console.WriteLine("PASS " + test.Key);
                    passed++;
                }
                catch (Exception error)
                {
                    Exception inner = error is AggregateException ? error.InnerException : error;
                    Console.WriteLine("FAIL " + test.Key + ": " + inner.GetType().Name + ": " + inner.Message.Replace('\n', ' '));
                    failed++;
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed, " + skipped + " skipped");
            return failed == 0 ? 0 : 1;
        }

        /// <summary>The value that follows name in args, read as pairs ("--reference URL"); null when absent.</summary>
        public static string Option(string[] args, string name)
        {
            string value = null;
            for (int index = 0; index + 1 < args.Length; index += 2)
            {
                if (args[index] == name) value = args[index + 1];
            }
            return value;
        }

        public static KeyValuePair<string, Action> Test(string name, Action body)
        {
            return new KeyValuePair<string, Action>(name, body);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new Exception(what + ": expected <" + expected + "> but got <" + actual + ">");
        }

        public static void True(bool condition, string what)
        {
            if (!condition) throw new Exception(what);
        }

        public static T Await<T>(Task<T> task, string what)
        {
            if (!task.Wait(Patience)) throw new Exception(what + ": no result within " + Patience.TotalSeconds + " s");
            return task.Result;
        }

        public static void Await(Task task, string what)
        {
            if (!task.Wait(Patience)) throw new Exception(what + ": no result within " + Patience.TotalSeconds + " s");
        }

        /// <summary>How the task ended: its exception, or a TaskCanceledException when cancelled.</summary>
        public static Exception Failure(Task task)
        {
            try
            {
                if (!task.Wait(Patience)) throw new Exception("the task did not finish");
            }
            catch (AggregateException error)
            {
                return error.InnerException;
            }
            throw new Exception("expected the task to fail, it succeeded");
        }

        /// <summary>Queues answers ("503,429,drop") on the faulty server for its next chat requests.</summary>
        public static void Faults(string faultyUrl, string faults)
        {
            using (HttpClient http = new HttpClient())
            {
                HttpResponseMessage response = http.PostAsync(faultyUrl + "/__faults", new StringContent(faults)).Result;
                Equal(204, (int)response.StatusCode, "fault queue accepted");
            }
        }
    }
}
