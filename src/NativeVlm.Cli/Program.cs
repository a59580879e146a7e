using CommandLine;
using NativeVlm.Cli;
using NativeVlm.Interop;
using NativeVlm.IO;
using NativeVlm.Models;

// Verbs of the console host. Errors exit 2 with a one-line reason; --help exits 0.
var parser = new Parser(settings =>
{
    settings.HelpWriter = Console.Out;
    settings.CaseInsensitiveEnumValues = true;
});

return parser.ParseArguments(args, typeof(DemoOptions), typeof(CompareOptions), typeof(MergeOptions), typeof(BenchOptions), typeof(InspectOptions), typeof(DatasetOptions), typeof(TrainOptions)).MapResult(
    (DemoOptions options) => Run(() => DemoCommand.Run(options)),
    (CompareOptions options) => Run(() => CompareCommand.Run(options)),
    (MergeOptions options) => Run(() => MergeCommand.Run(options)),
    (BenchOptions options) => Run(() => BenchCommand.Run(options)),
    (InspectOptions options) => Run(() => InspectCommand.Run(options)),
    (DatasetOptions options) => Run(() => DatasetCommand.Run(options)),
    (TrainOptions options) => Run(() => TrainCommand.Run(options)),
    errors => errors.All(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.VersionRequestedError or ErrorType.HelpVerbRequestedError) ? 0 : 2);

static int Run(Func<int> command)
{
    try
    {
        return command();
    }
    catch (Exception e) when (e is NvlmException or ArgumentException or DllNotFoundException or IOException
                                  or SafeTensorsException or ConfigException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"nativevlm: {e.Message}");
        return 2;
    }
}
