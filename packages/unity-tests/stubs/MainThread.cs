// Unity's main thread, for the UnityEngine stub: one thread that runs posted
// work in order, with a SynchronizationContext installed like Unity's
// UnitySynchronizationContext (Post queues for the loop; Send runs inline on
// the main thread). Each queued item stands in for a pass of the player loop:
// the stub's download callbacks and completed events are queued here, as
// Unity runs them on the main thread between frames. Not part of Unity.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;

namespace UnityStub
{
    /// <summary>The stub's main thread: run scene code with <see cref="Run{T}"/>.</summary>
    public static class MainThread
    {
        private static readonly BlockingCollection<Action> Queue = new BlockingCollection<Action>();
        private static readonly List<Exception> Errors = new List<Exception>();
        private static readonly Thread Thread;

        /// <summary>The context code on the main thread sees as SynchronizationContext.Current.</summary>
        public static readonly SynchronizationContext Context = new LoopContext();

        static MainThread()
        {
            Thread = new Thread(Loop) { IsBackground = true, Name = "main (UnityEngine stub)" };
            Thread.Start();
        }

        /// <summary>True on the main thread.</summary>
        public static bool IsCurrent { get { return Thread.CurrentThread == Thread; } }

        /// <summary>Queues work for the main thread.</summary>
        public static void Post(Action action)
        {
            Queue.Add(action);
        }

        /// <summary>Runs <paramref name="body"/> on the main thread and waits for its result.</summary>
        public static T Run<T>(Func<T> body)
        {
            if (IsCurrent) return body();
            T value = default(T);
            Exception error = null;
            using (ManualResetEventSlim done = new ManualResetEventSlim())
            {
                Post(() =>
                {
                    try
                    {
                        value = body();
                    }
                    catch (Exception thrown)
                    {
                        error = thrown;
                    }
                    done.Set();
                });
                done.Wait();
            }
            if (error != null) throw new AggregateException(error);
            return value;
        }

        /// <summary>
        /// Exceptions that escaped work on the main thread since the last call
        /// (Unity logs them and carries on; tests assert there were none).
        /// </summary>
        public static List<Exception> TakeErrors()
        {
            lock (Errors)
            {
                List<Exception> taken = new List<Exception>(Errors);
                Errors.Clear();
                return taken;
            }
        }

        /// <summary>Throws as Unity does when a main-thread-only member is used elsewhere.</summary>
        internal static void Require(string member)
        {
            if (!IsCurrent) throw new InvalidOperationException(member + " can only be called from the main thread.");
        }

        private static void Loop()
        {
            SynchronizationContext.SetSynchronizationContext(Context);
            foreach (Action action in Queue.GetConsumingEnumerable())
            {
                try
                {
                    action();
                }
                catch (Exception error)
                {
                    lock (Errors) Errors.Add(error);
                }
            }
        }

        private sealed class LoopContext : SynchronizationContext
        {
            public override void Post(SendOrPostCallback callback, object state)
            {
                Queue.Add(() => callback(state));
            }

            public override void Send(SendOrPostCallback callback, object state)
            {
                Run(() =>
                {
                    callback(state);
                    return true;
                });
            }

            public override SynchronizationContext CreateCopy()
            {
                return this;
            }
        }
    }
}
